//! Checking and compiling a configuration into a [`TenantPolicy`]: every error names its field.

use super::{RoutePolicy, TenantPolicy, Unresolved, NONE};
use crate::cache_policy::CacheRoute;
use crate::config::{
    CacheRouteConfig, Config, Stage, UnresolvedAction, DEFAULT_IDENTITY_HEADERS,
    DEFAULT_TENANT_HEADER, DEFAULT_TENANT_ID_MAX_LENGTH, MAX_TENANT_ID_MAX_LENGTH,
};
use crate::sources::{header_name, Reserved, Source};
use crate::streams::StreamLimits;
use filter_core::route::{check_forms, RouteBinding, UniqueMap};
use filter_core::{parse_json_config, ConfigError, RequestMatch, RequestMatcher};

impl TenantPolicy {
    /// Parses and validates a JSON plugin configuration.
    pub fn new(bytes: &[u8]) -> Result<TenantPolicy, ConfigError> {
        let config: Config = parse_json_config(bytes)?;
        TenantPolicy::compile(&config)
    }

    pub fn compile(config: &Config) -> Result<TenantPolicy, ConfigError> {
        let stage = config.stage;
        check_stage_fields(config)?;
        let tenant_header = header_name(
            "tenant_header",
            config
                .tenant_header
                .as_deref()
                .unwrap_or(DEFAULT_TENANT_HEADER),
        )?;

        let plan_header = compile_plan_header(config, &tenant_header)?;

        let max_len = config
            .tenant_id_max_length
            .unwrap_or(DEFAULT_TENANT_ID_MAX_LENGTH);
        if max_len == 0 || max_len > MAX_TENANT_ID_MAX_LENGTH {
            return Err(ConfigError::new(
                "tenant_id_max_length",
                format!("{max_len} is out of range (1 to {MAX_TENANT_ID_MAX_LENGTH})"),
            ));
        }
        let reserved = Reserved {
            tenant_header: &tenant_header,
            plan_header: plan_header.as_deref(),
            max_len,
        };
        let sources = compile_sources(config, &reserved)?;

        let mut cache_routes = compile_cache_routes(config)?;
        let routes = compile_route_policies(config, &mut cache_routes)?;

        let streams = config
            .streams
            .as_ref()
            .map(|s| {
                StreamLimits::compile(s, &reserved, routes.is_some())
                    .map_err(|e| e.within("streams"))
            })
            .transpose()?;
        let vary = config.vary.unwrap_or(true);
        if !vary && !cache_routes.is_empty() {
            return Err(ConfigError::new(
                "vary",
                "cannot be false with cache_routes: a route's lifetime would let a shared cache \
                 store one tenant's answer and serve it to every tenant",
            ));
        }
        Ok(TenantPolicy {
            stage,
            namespace_unverified: sources.iter().any(|s| s.kind().is_credential()),
            reads_client_cert: stage.resolves() && sources.iter().any(Source::reads_client_cert),
            sources,
            max_len,
            unresolved: compile_unresolved(config)?,
            credential_headers: header_list(
                "credential_headers",
                config.credential_headers.as_deref(),
                &["authorization"],
            )?,
            public_routes: compile_public_routes(config)?,
            identity_headers: compile_identity_headers(
                config,
                &reserved,
                !cache_routes.is_empty(),
            )?,
            vary,
            cache_routes,
            streams,
            routes,
            tenant_header,
            plan_header,
        })
    }
}

/// The route policies: each checked against the stage (`stream` and `public` are the request
/// stage's, `cache` the response stage's), each lifetime compiled into `cache_routes`. With
/// policies the deprecated route matchers are refused.
fn compile_route_policies(
    config: &Config,
    cache_routes: &mut Vec<CacheRoute>,
) -> Result<Option<RouteBinding<RoutePolicy>>, ConfigError> {
    let given = ("policies", config.policies.is_some());
    check_forms(given, "policies", !config.routes.is_empty(), ("", false))?;
    let Some(policies) = &config.policies else {
        return Ok(None);
    };
    for (field, set) in [
        ("public_routes", config.public_routes.is_some()),
        ("cache_routes", config.cache_routes.is_some()),
    ] {
        if set {
            return Err(ConfigError::new(
                field,
                "with policies, routes choose their policy: use a policy's public or cache",
            ));
        }
    }
    let stage = config.stage;
    let mut compiled = Vec::with_capacity(policies.0.len());
    for (name, p) in &policies.0 {
        let field = |f: &str| format!("policies.{name}.{f}");
        for (f, set, ok) in [
            ("stream", p.stream, stage.resolves()),
            ("public", p.public, stage.resolves()),
            ("cache", p.cache.is_some(), stage.shapes_responses()),
        ] {
            if set && !ok {
                let why = format!("is not for the {} stage", stage_label(stage));
                return Err(ConfigError::new(field(f), why));
            }
        }
        if p.stream && config.streams.is_none() {
            return Err(ConfigError::new(
                field("stream"),
                "needs a streams block with the caps",
            ));
        }
        let cache = match &p.cache {
            None => None,
            Some(c) if c.matches.is_some() => {
                let why = "the route chose this policy: no match here";
                return Err(ConfigError::new(field("cache.match"), why));
            }
            Some(c) => {
                // A lifetime for shared caches is for answers to reads only.
                let reads = RequestMatch {
                    methods: vec!["GET".into(), "HEAD".into()],
                    ..RequestMatch::default()
                };
                let c = CacheRouteConfig {
                    matches: Some(reads),
                    ..c.clone()
                };
                let route = CacheRoute::compile(&c).map_err(|e| e.within(&field("cache")))?;
                cache_routes.push(route);
                Some(cache_routes.len() - 1)
            }
        };
        let policy = RoutePolicy {
            stream: p.stream,
            public: p.public,
            cache,
        };
        compiled.push((name.clone(), policy));
    }
    RouteBinding::new(
        "tenant",
        &[NONE],
        ("policies", UniqueMap(compiled)),
        ("routes", config.routes.clone()),
    )
    .map(Some)
}

/// The plan header: a valid name, not the tenant header.
fn compile_plan_header(
    config: &Config,
    tenant_header: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(h) = &config.plan_header else {
        return Ok(None);
    };
    let h = header_name("plan_header", h)?;
    if h == tenant_header {
        return Err(ConfigError::new(
            "plan_header",
            "must differ from tenant_header",
        ));
    }
    Ok(Some(h))
}

fn compile_cache_routes(config: &Config) -> Result<Vec<CacheRoute>, ConfigError> {
    config
        .cache_routes
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| CacheRoute::compile(r).map_err(|e| e.within(&format!("cache_routes[{i}]"))))
        .collect()
}

/// Fields of the other stage are refused rather than ignored: a stage-split deployment with a
/// field on the wrong instance would otherwise silently do nothing.
fn check_stage_fields(config: &Config) -> Result<(), ConfigError> {
    let stage = config.stage;
    let fields = [
        (
            "sources",
            !config.sources.is_empty(),
            stage.resolves(),
            "request",
        ),
        (
            "unresolved",
            config.unresolved.is_some(),
            stage.resolves(),
            "request",
        ),
        (
            "public_routes",
            config.public_routes.is_some(),
            stage.resolves(),
            "request",
        ),
        (
            "streams",
            config.streams.is_some(),
            stage.resolves(),
            "request",
        ),
        (
            "vary",
            config.vary.is_some(),
            stage.shapes_responses(),
            "response",
        ),
        (
            "cache_routes",
            config.cache_routes.is_some(),
            stage.shapes_responses(),
            "response",
        ),
        (
            "identity_headers",
            config.identity_headers.is_some(),
            stage.shapes_responses(),
            "response",
        ),
    ];
    for (field, given, used, stage_name) in fields {
        if given && !used {
            return Err(ConfigError::new(
                field,
                format!(
                    "is only used by the {stage_name} stage; this instance has stage \"{}\"",
                    stage_label(stage)
                ),
            ));
        }
    }
    Ok(())
}

fn compile_sources(config: &Config, reserved: &Reserved<'_>) -> Result<Vec<Source>, ConfigError> {
    let mut sources: Vec<Source> = Vec::with_capacity(config.sources.len());
    for (i, raw) in config.sources.iter().enumerate() {
        let field = format!("sources[{i}]");
        if sources.last().is_some_and(Source::always_resolves) {
            return Err(ConfigError::new(
                field,
                "is never reached: an earlier default without a match always resolves",
            ));
        }
        sources.push(Source::compile(raw, reserved).map_err(|e| e.within(&field))?);
    }
    if config.stage.resolves() && sources.is_empty() {
        return Err(ConfigError::new(
            "sources",
            "at least one tenant source is required (claim, api_key, host, path or default)",
        ));
    }
    Ok(sources)
}

fn compile_unresolved(config: &Config) -> Result<Unresolved, ConfigError> {
    let Some(u) = &config.unresolved else {
        return Ok(Unresolved::Reject { status: 403 });
    };
    match (u.action, u.status) {
        (UnresolvedAction::Reject, None) => Ok(Unresolved::Reject { status: 403 }),
        (UnresolvedAction::Reject, Some(s @ (400 | 403))) => {
            Ok(Unresolved::Reject { status: s.into() })
        }
        (UnresolvedAction::Reject, Some(s)) => Err(ConfigError::new(
            "unresolved.status",
            format!("{s} is not allowed (400 or 403)"),
        )),
        (UnresolvedAction::Anonymous, None) => Ok(Unresolved::Anonymous),
        (UnresolvedAction::Anonymous, Some(_)) => Err(ConfigError::new(
            "unresolved.status",
            "only a reject has a status",
        )),
    }
}

/// A list of header names, lower-cased; `default` when the field is absent.
fn header_list(
    field: &str,
    given: Option<&[String]>,
    default: &[&str],
) -> Result<Vec<String>, ConfigError> {
    match given {
        None => Ok(default.iter().map(|h| h.to_string()).collect()),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, h)| header_name(&format!("{field}[{i}]"), h))
            .collect(),
    }
}

fn compile_public_routes(config: &Config) -> Result<Vec<RequestMatcher>, ConfigError> {
    config
        .public_routes
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            r.matches
                .compile()
                .map_err(|e| e.within(&format!("public_routes[{i}].match")))
        })
        .collect()
}

/// The identity headers removed on cache routes. A cache route is tenant-wide: a configuration
/// that would let the upstream see who the user is on one (no identity headers at all) is
/// refused, and so is naming a header the cache keys on (it would be stripped from the request
/// the cache entry is made for).
fn compile_identity_headers(
    config: &Config,
    reserved: &Reserved<'_>,
    has_cache_routes: bool,
) -> Result<Vec<String>, ConfigError> {
    let list = header_list(
        "identity_headers",
        config.identity_headers.as_deref(),
        &DEFAULT_IDENTITY_HEADERS,
    )?;
    if has_cache_routes && list.is_empty() {
        return Err(ConfigError::new(
            "identity_headers",
            "cannot be empty with cache_routes: a cached answer is stored once per tenant and \
             served to every user of it, so the upstream must not see who the user is (list the \
             headers that carry it, e.g. [\"x-user-id\", \"x-org-id\"])",
        ));
    }
    for (i, name) in list.iter().enumerate() {
        if name == reserved.tenant_header || Some(name.as_str()) == reserved.plan_header {
            return Err(ConfigError::new(
                format!("identity_headers[{i}]"),
                format!(
                    "{name:?} is the tenant or plan header: the cache varies on the tenant, \
                     so it must reach the upstream; identity headers name the user"
                ),
            ));
        }
    }
    Ok(list)
}

fn stage_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Both => "both",
        Stage::Request => "request",
        Stage::Response => "response",
    }
}
