//! The compiled configuration and every per-request decision: which headers to remove and set
//! on the request, and which `Vary` / `Cache-Control` to write on the response.

use crate::cache_policy::{bypass_request, merge_vary, privatize, CacheRoute, TTL_STATUSES};
use crate::config::{
    Config, Stage, UnresolvedAction, DEFAULT_TENANT_HEADER, DEFAULT_TENANT_ID_MAX_LENGTH,
    MAX_TENANT_ID_MAX_LENGTH,
};
use crate::sources::{header_name, Reserved, Source, SourceKind};
use filter_core::{parse_json_config, ConfigError, HeaderMap};

/// The validated configuration of one filter instance.
#[derive(Debug, Clone)]
pub struct TenantPolicy {
    stage: Stage,
    tenant_header: String,
    plan_header: Option<String>,
    sources: Vec<Source>,
    max_len: usize,
    unresolved: Unresolved,
    credential_headers: Vec<String>,
    vary: bool,
    cache_routes: Vec<CacheRoute>,
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
    pub outcome: Outcome,
    pub facts: RequestFacts,
}

impl RequestPlan<'_> {
    /// Carries the plan's removals and sets out on a copy of the headers, as the glue does on
    /// the host.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.set(name, value);
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

    /// Carries the edits out on a copy of the response headers, as the glue does on the host.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        if let Some(vary) = &self.vary {
            headers.set("vary", vary);
        }
        if let Some(cc) = &self.cache_control {
            headers.set("cache-control", cc);
        }
    }
}

/// The error body's `error` field for a rejected request.
pub const UNRESOLVED_ERROR: &str = "tenant_unresolved";
/// The error body's `message` for a rejected request.
pub const UNRESOLVED_MESSAGE: &str = "the request does not identify a tenant";

impl TenantPolicy {
    /// Parses and validates a JSON plugin configuration.
    pub fn new(bytes: &[u8]) -> Result<TenantPolicy, ConfigError> {
        let config: Config = parse_json_config(bytes)?;
        TenantPolicy::compile(&config)
    }

    pub fn compile(config: &Config) -> Result<TenantPolicy, ConfigError> {
        let stage = config.stage;
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

        // Fields of the other stage are refused rather than ignored: a stage-split deployment
        // with a field on the wrong instance would otherwise silently do nothing.
        let only_for = |field: &str, given: bool, used: bool, stage_name: &str| {
            if given && !used {
                Err(ConfigError::new(
                    field,
                    format!(
                        "is only used by the {stage_name} stage; this instance has stage \"{}\"",
                        stage_label(stage)
                    ),
                ))
            } else {
                Ok(())
            }
        };
        only_for(
            "sources",
            !config.sources.is_empty(),
            stage.resolves(),
            "request",
        )?;
        only_for(
            "unresolved",
            config.unresolved.is_some(),
            stage.resolves(),
            "request",
        )?;
        only_for(
            "vary",
            config.vary.is_some(),
            stage.shapes_responses(),
            "response",
        )?;
        only_for(
            "cache_routes",
            config.cache_routes.is_some(),
            stage.shapes_responses(),
            "response",
        )?;

        let reserved = Reserved {
            tenant_header: &tenant_header,
            plan_header: plan_header.as_deref(),
            max_len,
        };
        let mut sources = Vec::with_capacity(config.sources.len());
        for (i, raw) in config.sources.iter().enumerate() {
            let field = format!("sources[{i}]");
            if sources.last().is_some_and(Source::always_resolves) {
                return Err(ConfigError::new(
                    field,
                    "is never reached: an earlier default without a match always resolves",
                ));
            }
            sources.push(Source::compile(raw, &reserved).map_err(|e| e.within(&field))?);
        }
        if stage.resolves() && sources.is_empty() {
            return Err(ConfigError::new(
                "sources",
                "at least one tenant source is required (claim, api_key, host, path or default)",
            ));
        }

        let unresolved = match &config.unresolved {
            None => Unresolved::Reject { status: 403 },
            Some(u) => match (u.action, u.status) {
                (UnresolvedAction::Reject, None) => Unresolved::Reject { status: 403 },
                (UnresolvedAction::Reject, Some(s @ (400 | 403))) => {
                    Unresolved::Reject { status: s.into() }
                }
                (UnresolvedAction::Reject, Some(s)) => {
                    return Err(ConfigError::new(
                        "unresolved.status",
                        format!("{s} is not allowed (400 or 403)"),
                    ))
                }
                (UnresolvedAction::Anonymous, None) => Unresolved::Anonymous,
                (UnresolvedAction::Anonymous, Some(_)) => {
                    return Err(ConfigError::new(
                        "unresolved.status",
                        "only a reject has a status",
                    ))
                }
            },
        };

        let credential_headers = match &config.credential_headers {
            None => vec!["authorization".to_string()],
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, h)| header_name(&format!("credential_headers[{i}]"), h))
                .collect::<Result<_, _>>()?,
        };
        let cache_routes = config
            .cache_routes
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                CacheRoute::compile(r).map_err(|e| e.within(&format!("cache_routes[{i}]")))
            })
            .collect::<Result<_, _>>()?;

        Ok(TenantPolicy {
            stage,
            tenant_header,
            plan_header,
            sources,
            max_len,
            unresolved,
            credential_headers,
            vary: config.vary.unwrap_or(true),
            cache_routes,
        })
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn tenant_header(&self) -> &str {
        &self.tenant_header
    }

    /// Request phase: strip client copies of the headers this filter owns, resolve, and note
    /// what the response phase needs.
    pub fn request_plan(&self, headers: &HeaderMap) -> RequestPlan<'_> {
        let facts = |tenant: bool| {
            if !self.stage.shapes_responses() {
                return RequestFacts::default();
            }
            RequestFacts {
                tenant,
                authenticated: self.authenticated(headers),
                route: self
                    .cache_routes
                    .iter()
                    .position(|r| r.matcher().matches(headers)),
            }
        };
        if !self.stage.resolves() {
            let tenant = headers
                .get(&self.tenant_header)
                .is_some_and(|v| !v.is_empty());
            return RequestPlan {
                remove: Vec::new(),
                set: Vec::new(),
                forged: false,
                cache_bypassed: false,
                outcome: Outcome::NotResolving,
                facts: facts(tenant),
            };
        }

        let mut remove = Vec::new();
        if headers.contains(&self.tenant_header) {
            remove.push(self.tenant_header.as_str());
        }
        if let Some(plan) = self.plan_header.as_deref() {
            if headers.contains(plan) {
                remove.push(plan);
            }
        }
        let forged = !remove.is_empty();
        let resolved = self
            .sources
            .iter()
            .find_map(|s| s.resolve(headers, self.max_len));
        let mut set = Vec::new();
        let outcome = match resolved {
            Some(r) => {
                remove.extend(r.consumed);
                set.push((self.tenant_header.as_str(), r.tenant));
                if let (Some(header), Some(plan)) = (self.plan_header.as_deref(), r.plan) {
                    set.push((header, plan));
                }
                Outcome::Resolved(r.source)
            }
            None => match self.unresolved {
                Unresolved::Anonymous => Outcome::Anonymous,
                Unresolved::Reject { status } => Outcome::Reject { status },
            },
        };
        let tenant = matches!(outcome, Outcome::Resolved(_));
        let mut cache_bypassed = false;
        if outcome == Outcome::Anonymous && self.authenticated(headers) {
            // Envoy's cache skips requests with Authorization by itself; any other credential
            // the gateway could not map to a tenant must not be answered from the shared
            // (tenant-less) entry either.
            let existing: Vec<&str> = headers.get_all("cache-control").collect();
            if let Some(value) = bypass_request(&existing) {
                set.push(("cache-control", value));
            }
            cache_bypassed = true;
        }
        RequestPlan {
            remove,
            set,
            forged,
            cache_bypassed,
            outcome,
            facts: facts(tenant),
        }
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        self.credential_headers.iter().any(|h| headers.contains(h))
    }

    /// Response phase: `Vary`, then `Cache-Control` (a route's lifetime when the response has
    /// none, made private when the request was authenticated but carried no tenant).
    pub fn response_edits(&self, facts: RequestFacts, response: &HeaderMap) -> ResponseEdits {
        let mut edits = ResponseEdits::default();
        if !self.stage.shapes_responses() {
            return edits;
        }
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
        edits
    }
}

fn stage_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Both => "both",
        Stage::Request => "request",
        Stage::Response => "response",
    }
}
