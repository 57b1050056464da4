//! The compiled configuration and every per-request decision: which headers to remove and set
//! on the request, and which `Vary` / `Cache-Control` to write on the response.

use crate::cache_policy::{bypass_request, merge_vary, privatize, CacheRoute, TTL_STATUSES};
use crate::config::{
    Config, Stage, UnresolvedAction, DEFAULT_IDENTITY_HEADERS, DEFAULT_TENANT_HEADER,
    DEFAULT_TENANT_ID_MAX_LENGTH, MAX_TENANT_ID_MAX_LENGTH, UNVERIFIED_PREFIX,
};
use crate::sources::{header_name, Reserved, Resolution, Source, SourceKind};
use crate::streams::{StreamClaim, StreamLimits};
use filter_core::{parse_json_config, ConfigError, HeaderEdit, HeaderMap, RequestMatcher};

/// The validated configuration of one filter instance.
#[derive(Debug, Clone)]
pub struct TenantPolicy {
    stage: Stage,
    tenant_header: String,
    plan_header: Option<String>,
    sources: Vec<Source>,
    /// Some source is a credential (claim, api_key): tenants from the others are written with
    /// [`UNVERIFIED_PREFIX`].
    namespace_unverified: bool,
    max_len: usize,
    unresolved: Unresolved,
    credential_headers: Vec<String>,
    public_routes: Vec<RequestMatcher>,
    identity_headers: Vec<String>,
    vary: bool,
    cache_routes: Vec<CacheRoute>,
    streams: Option<StreamLimits>,
}

/// What to do with a request no source identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    Reject { status: u32 },
    Anonymous,
}

/// The result of resolution for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Resolved(SourceKind),
    /// No tenant; the request goes on without one.
    Anonymous,
    /// No tenant; answer with this status and a JSON error.
    Reject {
        status: u32,
    },
    /// The request presents an API key that does not verify: answered with 401 and a JSON
    /// error, never resolved by a later (weaker) source.
    InvalidApiKey,
    /// A response-stage instance resolves nothing.
    NotResolving,
}

/// What the response phase needs to know about the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The request carries a tenant (resolved here, or set by the request-stage instance).
    pub tenant: bool,
    /// One of the credential headers was present.
    pub authenticated: bool,
    /// Index of the first matching cache route.
    pub route: Option<usize>,
    /// Resolving stages: the request was credentialed (a credential header, or a tenant a
    /// credential source proved) and is on no public route, so the answer leaves the gateway
    /// `Cache-Control: private`, cache hits included.
    pub private: bool,
}

/// The request-phase edits, in the order the glue applies them: removals, then sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPlan<'p> {
    /// Headers whose every value is removed.
    pub remove: Vec<&'p str>,
    /// Headers set to one value.
    pub set: Vec<(&'p str, String)>,
    /// A client sent the tenant or plan header (removed).
    pub forged: bool,
    /// The request carries a credential but no tenant: `Cache-Control: no-cache` was added so a
    /// shared cache asks the upstream instead of answering from an entry.
    pub cache_bypassed: bool,
    /// The request is on a cache route and carried identity headers (removed).
    pub identity_removed: bool,
    pub outcome: Outcome,
    pub facts: RequestFacts,
    /// The request opens a long-lived stream on a `streams` route (and is not refused here):
    /// the host counts it against the caps before it goes on, and releases it when it ends.
    pub stream: Option<StreamClaim>,
}

impl RequestPlan<'_> {
    /// The plan's header writes: the removals, then the sets.
    pub fn edits(&self) -> Vec<HeaderEdit> {
        let removals = self
            .remove
            .iter()
            .map(|n| HeaderEdit::Remove(n.to_string()));
        let sets = (self.set.iter()).map(|(n, v)| HeaderEdit::Set(n.to_string(), v.clone()));
        removals.chain(sets).collect()
    }

    /// Carries the plan's edits out on a copy of the headers, as the host would.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for edit in self.edits() {
            edit.apply_to(headers);
        }
    }
}

/// The response-phase edits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseEdits {
    /// New `Vary` value (replacing every `vary` line).
    pub vary: Option<String>,
    /// New `Cache-Control` value (replacing every line).
    pub cache_control: Option<String>,
    pub private_set: bool,
    pub ttl_set: bool,
}

impl ResponseEdits {
    pub fn is_empty(&self) -> bool {
        self.vary.is_none() && self.cache_control.is_none()
    }

    /// The header writes: `Vary`, then `Cache-Control`.
    pub fn edits(&self) -> Vec<HeaderEdit> {
        let vary = self.vary.iter().map(|v| ("vary", v));
        let cc = self.cache_control.iter().map(|v| ("cache-control", v));
        (vary.chain(cc))
            .map(|(n, v)| HeaderEdit::Set(n.to_string(), v.clone()))
            .collect()
    }

    /// Carries the edits out on a copy of the response headers, as the host would.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for edit in self.edits() {
            edit.apply_to(headers);
        }
    }
}

/// The error body's `error` field for a rejected request.
pub const UNRESOLVED_ERROR: &str = "tenant_unresolved";
/// The error body's `message` for a rejected request.
pub const UNRESOLVED_MESSAGE: &str = "the request does not identify a tenant";
/// The error body's `error` field for an API key that does not verify (status 401).
pub const INVALID_API_KEY_ERROR: &str = "invalid_api_key";
/// The error body's `message` for an API key that does not verify (the key is never echoed).
pub const INVALID_API_KEY_MESSAGE: &str = "the API key is not valid";

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
        let plan_header = match &config.plan_header {
            None => None,
            Some(h) => {
                let h = header_name("plan_header", h)?;
                if h == tenant_header {
                    return Err(ConfigError::new(
                        "plan_header",
                        "must differ from tenant_header",
                    ));
                }
                Some(h)
            }
        };
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
        let cache_routes: Vec<CacheRoute> = config
            .cache_routes
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                CacheRoute::compile(r).map_err(|e| e.within(&format!("cache_routes[{i}]")))
            })
            .collect::<Result<_, _>>()?;
        let streams = config
            .streams
            .as_ref()
            .map(|s| StreamLimits::compile(s, &reserved).map_err(|e| e.within("streams")))
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
            tenant_header,
            plan_header,
        })
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn tenant_header(&self) -> &str {
        &self.tenant_header
    }

    /// The caps on long-lived streams, when configured (request stage).
    pub fn streams(&self) -> Option<&StreamLimits> {
        self.streams.as_ref()
    }

    /// True when the response phase has something to do for a request with these facts: this
    /// instance shapes responses for caches, or the answer must leave the gateway private.
    pub fn edits_responses(&self, facts: &RequestFacts) -> bool {
        self.stage.shapes_responses() || facts.private
    }

    /// Request phase: strip client copies of the headers this filter owns, resolve, remove the
    /// user's identity on cache routes, and note what the response phase needs.
    pub fn request_plan(&self, headers: &HeaderMap) -> RequestPlan<'_> {
        let route = self.cache_route(headers);
        let mut remove = self.identity_removals(headers, route);
        let identity_removed = !remove.is_empty();
        let facts = RequestFacts {
            tenant: false,
            authenticated: self.stage.shapes_responses() && self.authenticated(headers),
            route,
            private: false,
        };
        if !self.stage.resolves() {
            let tenant = headers
                .get(&self.tenant_header)
                .is_some_and(|v| !v.is_empty());
            return RequestPlan {
                remove,
                set: Vec::new(),
                forged: false,
                cache_bypassed: false,
                identity_removed,
                outcome: Outcome::NotResolving,
                facts: RequestFacts { tenant, ..facts },
                stream: None,
            };
        }

        let owned = remove.len();
        remove.push(self.tenant_header.as_str());
        remove.extend(self.plan_header.as_deref());
        remove.retain(|name| headers.contains(name));
        let forged = remove.len() > owned;
        let mut set = Vec::new();
        let outcome = self.resolve_into(headers, &mut remove, &mut set);
        let authenticated = self.authenticated(headers);
        let mut cache_bypassed = false;
        if outcome == Outcome::Anonymous && authenticated {
            // Envoy's cache skips requests with Authorization by itself; any other credential
            // the gateway could not map to a tenant must not be answered from the shared
            // (tenant-less) entry either.
            let existing: Vec<&str> = headers.get_all("cache-control").collect();
            if let Some(value) = bypass_request(&existing) {
                set.push(("cache-control", value));
            }
            cache_bypassed = true;
        }
        let credentialed =
            authenticated || matches!(outcome, Outcome::Resolved(k) if k.is_credential());
        let private = credentialed && !self.public_routes.iter().any(|m| m.matches(headers));
        let stream = self.stream_claim(headers, outcome, &set);
        RequestPlan {
            remove,
            set,
            forged,
            cache_bypassed,
            identity_removed,
            outcome,
            facts: RequestFacts {
                tenant: matches!(outcome, Outcome::Resolved(_)),
                private,
                ..facts
            },
            stream,
        }
    }

    /// The stream a request that goes on opens on a `streams` route, with the tenant as it is
    /// written to the tenant header.
    fn stream_claim(
        &self,
        headers: &HeaderMap,
        outcome: Outcome,
        set: &[(&str, String)],
    ) -> Option<StreamClaim> {
        if !matches!(outcome, Outcome::Resolved(_) | Outcome::Anonymous) {
            return None;
        }
        let tenant = set
            .iter()
            .find(|(name, _)| *name == self.tenant_header)
            .map(|(_, value)| value.as_str());
        self.streams.as_ref()?.claim(headers, tenant)
    }

    /// Resolves the tenant and plans its headers: the tenant (in the unverified namespace when
    /// no credential proved it and the policy has credential sources), the plan, the consumed
    /// API key.
    fn resolve_into<'p>(
        &'p self,
        headers: &HeaderMap,
        remove: &mut Vec<&'p str>,
        set: &mut Vec<(&'p str, String)>,
    ) -> Outcome {
        match self.resolve(headers) {
            Resolution::Tenant(r) => {
                remove.extend(r.consumed);
                let tenant = if self.namespace_unverified && !r.source.is_credential() {
                    format!("{UNVERIFIED_PREFIX}{}", r.tenant)
                } else {
                    r.tenant
                };
                set.push((self.tenant_header.as_str(), tenant));
                if let (Some(header), Some(plan)) = (self.plan_header.as_deref(), r.plan) {
                    set.push((header, plan));
                }
                Outcome::Resolved(r.source)
            }
            Resolution::Invalid => Outcome::InvalidApiKey,
            Resolution::Skip => match self.unresolved {
                Unresolved::Anonymous => Outcome::Anonymous,
                Unresolved::Reject { status } => Outcome::Reject { status },
            },
        }
    }

    /// The first source that decides: a tenant, or a credential that does not verify.
    fn resolve(&self, headers: &HeaderMap) -> Resolution<'_> {
        for source in &self.sources {
            match source.resolve(headers, self.max_len) {
                Resolution::Skip => continue,
                decided => return decided,
            }
        }
        Resolution::Skip
    }

    /// Index of the first cache route the request matches (stages that shape responses).
    fn cache_route(&self, headers: &HeaderMap) -> Option<usize> {
        if !self.stage.shapes_responses() {
            return None;
        }
        self.cache_routes
            .iter()
            .position(|r| r.matcher().matches(headers))
    }

    /// On a cache route, the identity headers the request carries: the answer is stored once
    /// per tenant, so the upstream must not see who the user is.
    fn identity_removals(&self, headers: &HeaderMap, route: Option<usize>) -> Vec<&str> {
        if route.is_none() {
            return Vec::new();
        }
        self.identity_headers
            .iter()
            .map(String::as_str)
            .filter(|h| headers.contains(h))
            .collect()
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        self.credential_headers.iter().any(|h| headers.contains(h))
    }

    /// Response phase: for caches (response stages), `Vary` then `Cache-Control` (a route's
    /// lifetime when the response has none, made private when the request was authenticated but
    /// carried no tenant); for the client (resolving stages), `Cache-Control: private` when the
    /// request was credentialed.
    pub fn response_edits(&self, facts: RequestFacts, response: &HeaderMap) -> ResponseEdits {
        let mut edits = ResponseEdits::default();
        if self.stage.shapes_responses() {
            self.shape_for_caches(facts, response, &mut edits);
        }
        if facts.private {
            let private = match &edits.cache_control {
                Some(cc) => privatize(&[cc.as_str()]),
                None => privatize(&response.get_all("cache-control").collect::<Vec<_>>()),
            };
            if private.is_some() {
                edits.cache_control = private;
                edits.private_set = true;
            }
        }
        edits
    }

    fn shape_for_caches(
        &self,
        facts: RequestFacts,
        response: &HeaderMap,
        edits: &mut ResponseEdits,
    ) {
        if self.vary {
            let existing: Vec<&str> = response.get_all("vary").collect();
            edits.vary = merge_vary(&existing, &self.tenant_header);
        }
        let existing: Vec<&str> = response.get_all("cache-control").collect();
        let status = response.get(":status").unwrap_or("");
        let route = facts
            .route
            .and_then(|i| self.cache_routes.get(i))
            // A response that sets a cookie is one user's, not the tenant's: no lifetime for
            // a shared cache (the upstream may still make it cacheable itself).
            .filter(|_| {
                existing.is_empty()
                    && TTL_STATUSES.contains(&status)
                    && !response.contains("set-cookie")
            });
        if facts.authenticated && !facts.tenant {
            let base = match route {
                Some(r) => vec![r.directives()],
                None => existing,
            };
            edits.cache_control = privatize(&base);
            edits.private_set = edits.cache_control.is_some();
            edits.ttl_set = edits.private_set && route.is_some();
        } else if let Some(r) = route {
            edits.cache_control = Some(r.directives().to_string());
            edits.ttl_set = true;
        }
    }
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
