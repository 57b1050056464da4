//! The plugin configuration: where the lease service is, how long a request may wait for
//! tokens, what happens when the service cannot be reached, and which descriptors each request
//! carries (Envoy's `rate_limits` actions, per rule).
//!
//! ```json
//! {
//!   "cluster": "ratelimit", "domain": "edge", "timeout_ms": 250, "failure_mode": "allow",
//!   "lease_size": 100,
//!   "rules": [{
//!     "match": { "path_prefix": "/api/users" },
//!     "descriptors": [
//!       [{ "request_headers": { "header_name": "x-tenant-id", "descriptor_key": "tenant" } }],
//!       [{ "generic_key": { "descriptor_key": "route", "descriptor_value": "users" } }]
//!     ]
//!   }]
//! }
//! ```

use crate::descriptors::{Action, DescriptorSpec};
use filter_core::config::header_name;
use filter_core::route::{check_forms, RouteBinding, UniqueMap};
use filter_core::{parse_json_config, ConfigError, RequestMatch, RequestMatcher};
use serde::Deserialize;

/// The most tokens a pool asks for in one lease (the service may grant fewer).
pub const MAX_LEASE: u32 = 10_000;

/// The range of `max_pools` (shared-data slots for pools, ~150 bytes each).
pub const MIN_POOLS: u32 = 16;
pub const MAX_POOLS: u32 = 1_048_576;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: String,
    domain: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    failure_mode: FailureMode,
    #[serde(default = "default_lease")]
    lease_size: u32,
    #[serde(default = "default_pools")]
    max_pools: u32,
    /// Deprecated: descriptors chosen by each rule's own `match` and `routes` list.
    #[serde(default)]
    rules: Vec<RawRule>,
    /// Named descriptor sets, chosen by the route Envoy matched (its `edgegate.ratelimit`
    /// metadata, or its name through `routes`).
    #[serde(default)]
    limits: Option<UniqueMap<RawLimit>>,
    /// Route name -> limit name (or `none`), for routes that carry no metadata.
    #[serde(default)]
    routes: UniqueMap<String>,
}

/// A named limit: the descriptors a request on a route that names it carries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    descriptors: Vec<Vec<RawAction>>,
}

fn default_pools() -> u32 {
    crate::slots::DEFAULT_SLOTS
}

fn default_timeout() -> u64 {
    250
}

fn default_lease() -> u32 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default, rename = "match")]
    matches: RequestMatch,
    /// Only requests Envoy routed to one of these named routes (`name:` of the route).
    #[serde(default)]
    routes: Option<Vec<String>>,
    descriptors: Vec<Vec<RawAction>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawAction {
    RequestHeaders {
        header_name: String,
        descriptor_key: String,
        #[serde(default)]
        skip_if_absent: bool,
    },
    GenericKey {
        #[serde(default)]
        descriptor_key: Option<String>,
        descriptor_value: String,
    },
    RemoteAddress {},
    /// `(descriptor_key, <the name of the route Envoy matched>)`; a request on an unnamed
    /// route has no such entry (the descriptor is left out).
    RouteName {
        descriptor_key: String,
    },
}

/// What a request gets when it needs tokens and the lease service cannot be reached in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Admitted (and counted): an unreachable service must not take the API down.
    #[default]
    Allow,
    /// Answered 503.
    Deny,
}

/// One rule: the requests it matches and the descriptors they carry.
#[derive(Debug)]
pub struct Rule {
    /// The limit's name (`limits.<name>`), or `rules[<i>]` for a deprecated rule: what the
    /// audit log names when the rule refuses a request.
    pub name: String,
    pub matcher: RequestMatcher,
    /// The route names the rule is limited to (None: any route).
    pub routes: Option<Vec<String>>,
    pub descriptors: Vec<DescriptorSpec>,
    /// An action reads the downstream address (one property read per request of the rule).
    pub reads_remote: bool,
}

impl Rule {
    /// Whether the rule applies to a request routed to `route` (None: an unnamed route).
    pub fn applies(&self, headers: &filter_core::HeaderMap, route: Option<&str>) -> bool {
        let on_route = match &self.routes {
            None => true,
            Some(names) => route.is_some_and(|r| names.iter().any(|n| n == r)),
        };
        on_route && self.matcher.matches(headers)
    }

    /// Whether the rule needs the route's name (an action or its route list reads it).
    pub fn reads_route(&self) -> bool {
        self.routes.is_some()
            || (self.descriptors.iter()).any(|d| {
                d.actions
                    .iter()
                    .any(|a| matches!(a, Action::RouteName { .. }))
            })
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    pub lease_size: u32,
    /// Shared-data slots for pools: the most descriptor lists holding tokens at once.
    pub max_pools: u32,
    /// The first rule that matches a request decides its descriptors (with `limits`: the
    /// named limits, in order, each matching every request: the route chose it).
    pub rules: Vec<Rule>,
    /// A rule reads the matched route's name (one property read per request).
    pub reads_route: bool,
    /// Named limits chosen by routes (indices into `rules`); `None`: the rules' own matchers.
    pub limits: Option<RouteBinding<usize>>,
}

/// The reserved limit name of routes no limit applies to.
pub const NONE: &str = "none";

impl Config {
    /// Parses and validates a JSON plugin configuration; errors name the field.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json_config(bytes)?;
        for (field, value) in [("cluster", &raw.cluster), ("domain", &raw.domain)] {
            if value.trim().is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        if raw.timeout_ms == 0 || raw.timeout_ms > 60_000 {
            return Err(ConfigError::new(
                "timeout_ms",
                "must be between 1 and 60000 (a request waits at most this long for tokens)",
            ));
        }
        if raw.lease_size == 0 || raw.lease_size > MAX_LEASE {
            return Err(ConfigError::new(
                "lease_size",
                format!("must be between 1 and {MAX_LEASE}"),
            ));
        }
        if !(MIN_POOLS..=MAX_POOLS).contains(&raw.max_pools) {
            return Err(ConfigError::new(
                "max_pools",
                format!("must be between {MIN_POOLS} and {MAX_POOLS}"),
            ));
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, rule) in raw.rules.iter().enumerate() {
            let name = format!("rules[{i}]");
            rules.push(compile_rule(rule, &name).map_err(|e| e.within(&name))?);
        }
        let limits = compile_limits(&raw, &mut rules)?;
        Ok(Config {
            reads_route: rules.iter().any(Rule::reads_route),
            limits,
            cluster: raw.cluster,
            domain: raw.domain,
            timeout_ms: raw.timeout_ms,
            failure_mode: raw.failure_mode,
            lease_size: raw.lease_size,
            max_pools: raw.max_pools,
            rules,
        })
    }
}

/// `limits`: each named limit compiled as a rule matching every request, bound by name.
/// Refused alongside the deprecated `rules`.
fn compile_limits(
    raw: &RawConfig,
    rules: &mut Vec<Rule>,
) -> Result<Option<RouteBinding<usize>>, ConfigError> {
    let named = ("limits", raw.limits.is_some());
    check_forms(
        named,
        "limits",
        !raw.routes.is_empty(),
        ("rules", !rules.is_empty()),
    )?;
    let Some(limits) = &raw.limits else {
        return Ok(None);
    };
    let mut named = Vec::with_capacity(limits.0.len());
    for (name, limit) in &limits.0 {
        let rule = RawRule {
            matches: RequestMatch::default(),
            routes: None,
            descriptors: limit.descriptors.clone(),
        };
        rules.push(compile_rule(&rule, name).map_err(|e| e.within(&format!("limits.{name}")))?);
        named.push((name.clone(), rules.len() - 1));
    }
    RouteBinding::new(
        "ratelimit",
        &[NONE],
        ("limits", UniqueMap(named)),
        ("routes", raw.routes.clone()),
    )
    .map(Some)
}

fn compile_rule(rule: &RawRule, name: &str) -> Result<Rule, ConfigError> {
    let matcher = rule.matches.compile().map_err(|e| e.within("match"))?;
    if rule.descriptors.is_empty() {
        return Err(ConfigError::new(
            "descriptors",
            "give at least one descriptor",
        ));
    }
    let mut descriptors = Vec::with_capacity(rule.descriptors.len());
    for (i, actions) in rule.descriptors.iter().enumerate() {
        let field = format!("descriptors[{i}]");
        if actions.is_empty() {
            return Err(ConfigError::new(
                field,
                "a descriptor needs at least one action",
            ));
        }
        let mut compiled = Vec::with_capacity(actions.len());
        for (j, action) in actions.iter().enumerate() {
            let at = format!("{field}[{j}]");
            compiled.push(compile_action(action).map_err(|e| e.within(&at))?);
        }
        descriptors.push(DescriptorSpec { actions: compiled });
    }
    if let Some(routes) = &rule.routes {
        if routes.is_empty() || routes.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "routes",
                "list at least one route name, none empty",
            ));
        }
    }
    let reads_remote =
        (descriptors.iter()).any(|d| d.actions.iter().any(|a| matches!(a, Action::RemoteAddress)));
    Ok(Rule {
        name: name.to_string(),
        matcher,
        routes: rule.routes.clone(),
        descriptors,
        reads_remote,
    })
}

fn compile_action(action: &RawAction) -> Result<Action, ConfigError> {
    Ok(match action {
        RawAction::RequestHeaders {
            header_name: name,
            descriptor_key,
            skip_if_absent,
        } => Action::RequestHeader {
            header: header_name("request_headers.header_name", name)?,
            key: non_empty("request_headers.descriptor_key", descriptor_key)?,
            skip_if_absent: *skip_if_absent,
        },
        RawAction::GenericKey {
            descriptor_key,
            descriptor_value,
        } => Action::Generic {
            key: match descriptor_key {
                Some(k) => non_empty("generic_key.descriptor_key", k)?,
                None => "generic_key".to_string(),
            },
            value: non_empty("generic_key.descriptor_value", descriptor_value)?,
        },
        RawAction::RemoteAddress {} => Action::RemoteAddress,
        RawAction::RouteName { descriptor_key } => Action::RouteName {
            key: non_empty("route_name.descriptor_key", descriptor_key)?,
        },
    })
}

fn non_empty(field: &str, value: &str) -> Result<String, ConfigError> {
    if value.is_empty() {
        Err(ConfigError::new(field, "must not be empty"))
    } else {
        Ok(value.to_string())
    }
}
