//! The configuration: endpoints (chosen by the route) and their legs, as written (serde types,
//! unknown fields refused) and compiled once into [`Config`]. Every refusal names its field.

use crate::cache::CachePolicy;
use crate::request::{check_forwarded, check_path_template, default_forward};
use filter_core::config::{header_name, ConfigError};
use filter_core::route::{RouteBinding, UniqueMap};
use serde::Deserialize;
use transform::body_ops::BodyOps;
use transform::config::BodyOpsConfig;
use transform::json_path::{JsonPath, Step};
use transform::template::Template;

/// The route metadata key (`edgegate.aggregate`) that names an endpoint.
pub const METADATA_KEY: &str = "aggregate";
/// Most legs one endpoint may have: each is one call per request.
pub const MAX_LEGS: usize = 16;
/// Longest a leg or an endpoint may take.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Default `deadline_ms` of an endpoint (and `timeout_ms` of its legs).
pub const DEFAULT_DEADLINE_MS: u64 = 5_000;
/// Default `max_leg_bytes`: the largest body one leg may answer with.
pub const DEFAULT_MAX_LEG_BYTES: u64 = 1024 * 1024;
/// Default `max_total_bytes`: all legs' bodies together.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 4 * 1024 * 1024;
/// Upper bound of both limits: bodies are held in the VM's memory.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Longest an answer may be cached.
pub const MAX_CACHE_TTL_MS: u64 = 3_600_000;
/// Default and upper bound of a cache's `max_entries`.
pub const DEFAULT_CACHE_ENTRIES: u64 = 1024;
pub const MAX_CACHE_ENTRIES: u64 = 100_000;
/// Default `max_bytes` of a cache (its bodies together; per Envoy worker).
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// The response member listing failed optional legs.
pub const ERRORS_KEY: &str = "_errors";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    endpoints: UniqueMap<RawEndpoint>,
    /// Route name -> endpoint, for routes that carry no metadata (Istio).
    #[serde(default)]
    routes: UniqueMap<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    legs: Vec<RawLeg>,
    #[serde(default)]
    deadline_ms: Option<u64>,
    #[serde(default)]
    max_leg_bytes: Option<u64>,
    #[serde(default)]
    max_total_bytes: Option<u64>,
    #[serde(default)]
    cache: Option<RawCache>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    ttl_ms: u64,
    #[serde(default)]
    max_entries: Option<u64>,
    #[serde(default)]
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeg {
    name: String,
    cluster: String,
    #[serde(default)]
    method: Option<String>,
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    forward_headers: Option<Vec<String>>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    merge: bool,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    body: Option<BodyOpsConfig>,
}

/// The compiled configuration: endpoints by name, bound to routes.
#[derive(Debug)]
pub struct Config {
    pub binding: RouteBinding<Endpoint>,
}

/// One aggregated endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub legs: Vec<Leg>,
    /// The stage answers within this time: no leg's timeout exceeds it.
    pub deadline_ms: u64,
    pub max_total_bytes: usize,
    /// Complete answers are kept this long (crate::cache).
    pub cache: Option<CachePolicy>,
}

/// Where a leg's body goes in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Under this member (the leg's name, or its `group`).
    Member(String),
    /// Its members into the root object.
    Merge,
}

/// One call of an endpoint.
#[derive(Debug, Clone)]
pub struct Leg {
    pub name: String,
    pub cluster: String,
    pub method: String,
    pub path: Template,
    pub authority: String,
    /// Request headers copied to the call (lower-case).
    pub forward: Vec<String>,
    pub timeout_ms: u64,
    pub required: bool,
    pub max_body_bytes: usize,
    pub placement: Placement,
    /// The part of the body that is kept (`data.items`).
    pub target: Option<JsonPath>,
    /// transform's strip/rename/add/set, applied to the body as the leg answered it.
    pub ops: Option<BodyOps>,
}

impl Config {
    /// Parses and validates a plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = filter_core::parse_json_config(bytes)?;
        if raw.endpoints.is_empty() {
            return Err(ConfigError::new(
                "endpoints",
                "define at least one endpoint",
            ));
        }
        let mut endpoints = Vec::with_capacity(raw.endpoints.0.len());
        for (name, endpoint) in raw.endpoints.0 {
            let field = format!("endpoints.{name}");
            let compiled = endpoint.compile(&name).map_err(|e| e.within(&field))?;
            endpoints.push((name, compiled));
        }
        let binding = RouteBinding::new(
            METADATA_KEY,
            &[],
            ("endpoints", UniqueMap(endpoints)),
            ("routes", raw.routes),
        )?;
        Ok(Config { binding })
    }
}

fn limit(value: Option<u64>, default: u64, field: &str) -> Result<usize, ConfigError> {
    let value = value.unwrap_or(default);
    if !(1..=MAX_BYTES).contains(&value) {
        let why = format!("must be between 1 and {MAX_BYTES} bytes");
        return Err(ConfigError::new(field, why));
    }
    usize::try_from(value).map_err(|_| ConfigError::new(field, "too large for this platform"))
}

fn millis(value: Option<u64>, default: u64, field: &str) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if !(1..=MAX_TIMEOUT_MS).contains(&value) {
        let why = format!("must be between 1 and {MAX_TIMEOUT_MS} milliseconds");
        return Err(ConfigError::new(field, why));
    }
    Ok(value)
}

impl RawEndpoint {
    fn compile(self, name: &str) -> Result<Endpoint, ConfigError> {
        if self.legs.is_empty() || self.legs.len() > MAX_LEGS {
            let why = format!("an endpoint has 1 to {MAX_LEGS} legs");
            return Err(ConfigError::new("legs", why));
        }
        let deadline_ms = millis(self.deadline_ms, DEFAULT_DEADLINE_MS, "deadline_ms")?;
        let max_leg = limit(self.max_leg_bytes, DEFAULT_MAX_LEG_BYTES, "max_leg_bytes")?;
        let max_total_bytes = limit(
            self.max_total_bytes,
            DEFAULT_MAX_TOTAL_BYTES,
            "max_total_bytes",
        )?;
        let defaults = LegDefaults {
            deadline_ms,
            max_leg,
            max_total_bytes,
        };
        let mut legs: Vec<Leg> = Vec::with_capacity(self.legs.len());
        for (i, raw) in self.legs.into_iter().enumerate() {
            let field = format!("legs[{i}]");
            let leg = raw.compile(&defaults).map_err(|e| e.within(&field))?;
            check_unique(&legs, &leg).map_err(|e| e.within(&field))?;
            legs.push(leg);
        }
        let cache = self.cache.map(compile_cache).transpose();
        Ok(Endpoint {
            name: name.to_string(),
            legs,
            deadline_ms,
            max_total_bytes,
            cache: cache.map_err(|e| e.within("cache"))?,
        })
    }
}

fn compile_cache(raw: RawCache) -> Result<CachePolicy, ConfigError> {
    if !(1..=MAX_CACHE_TTL_MS).contains(&raw.ttl_ms) {
        let why = format!("must be between 1 and {MAX_CACHE_TTL_MS} milliseconds");
        return Err(ConfigError::new("ttl_ms", why));
    }
    let entries = raw.max_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);
    if !(1..=MAX_CACHE_ENTRIES).contains(&entries) {
        let why = format!("must be between 1 and {MAX_CACHE_ENTRIES}");
        return Err(ConfigError::new("max_entries", why));
    }
    Ok(CachePolicy {
        ttl_ms: raw.ttl_ms,
        max_entries: usize::try_from(entries).unwrap_or(usize::MAX),
        max_bytes: limit(raw.max_bytes, DEFAULT_CACHE_BYTES, "max_bytes")?,
    })
}

/// Two legs may share neither a name nor the member their bodies go under.
fn check_unique(earlier: &[Leg], leg: &Leg) -> Result<(), ConfigError> {
    if let Some(j) = earlier.iter().position(|l| l.name == leg.name) {
        let why = format!("{:?} is already the name of legs[{j}]", leg.name);
        return Err(ConfigError::new("name", why));
    }
    if let Placement::Member(key) = &leg.placement {
        let taken = |l: &Leg| matches!(&l.placement, Placement::Member(k) if k == key);
        if let Some(j) = earlier.iter().position(taken) {
            let field = if leg.name == *key { "name" } else { "group" };
            let why = format!("legs[{j}]'s body already goes under {key:?}");
            return Err(ConfigError::new(field, why));
        }
    }
    Ok(())
}

struct LegDefaults {
    deadline_ms: u64,
    max_leg: usize,
    max_total_bytes: usize,
}

impl RawLeg {
    fn compile(self, defaults: &LegDefaults) -> Result<Leg, ConfigError> {
        filter_core::route::check_name(&self.name).map_err(|why| ConfigError::new("name", why))?;
        check_cluster(&self.cluster)?;
        let method = check_method(self.method.as_deref().unwrap_or("GET"))?;
        let path = check_path_template(&self.path).map_err(|why| ConfigError::new("path", why))?;
        let authority = match self.authority {
            Some(a) => check_authority(&a)?,
            None => self.cluster.clone(),
        };
        let forward = forwarded(self.forward_headers)?;
        let timeout_ms = millis(self.timeout_ms, defaults.deadline_ms, "timeout_ms")?;
        if timeout_ms > defaults.deadline_ms {
            let why = format!(
                "{timeout_ms} exceeds the endpoint's deadline_ms ({})",
                defaults.deadline_ms
            );
            return Err(ConfigError::new("timeout_ms", why));
        }
        let max_body_bytes = limit(
            self.max_body_bytes,
            defaults.max_leg as u64,
            "max_body_bytes",
        )?;
        if max_body_bytes > defaults.max_total_bytes {
            let why = "exceeds the endpoint's max_total_bytes";
            return Err(ConfigError::new("max_body_bytes", why));
        }
        let placement = placement(&self.name, self.group, self.merge)?;
        let target = self.target.as_deref().map(check_target).transpose()?;
        let ops = self.body.as_ref().map(compile_ops).transpose()?;
        Ok(Leg {
            name: self.name,
            cluster: self.cluster,
            method,
            path,
            authority,
            forward,
            timeout_ms,
            required: self.required,
            max_body_bytes,
            placement,
            target,
            ops,
        })
    }
}

fn check_cluster(cluster: &str) -> Result<(), ConfigError> {
    let ok = |c: char| c.is_ascii_graphic() && c != '"';
    if cluster.is_empty() || cluster.len() > 256 || !cluster.chars().all(ok) {
        let why = "must be an Envoy cluster name (1 to 256 visible ASCII characters)";
        return Err(ConfigError::new("cluster", why));
    }
    Ok(())
}

fn check_method(method: &str) -> Result<String, ConfigError> {
    if !filter_core::headers::is_token(method) || method.bytes().any(|b| b.is_ascii_lowercase()) {
        let why = format!("{method:?} is not an HTTP method (an upper-case token: GET, POST, ...)");
        return Err(ConfigError::new("method", why));
    }
    Ok(method.to_string())
}

fn check_authority(authority: &str) -> Result<String, ConfigError> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b);
    if authority.is_empty() || authority.len() > 255 || !authority.bytes().all(ok) {
        let why = format!("{authority:?} is not a host[:port]");
        return Err(ConfigError::new("authority", why));
    }
    Ok(authority.to_string())
}

fn forwarded(given: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let Some(names) = given else {
        return Ok(default_forward());
    };
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = format!("forward_headers[{i}]");
        let name = header_name(&field, name)?;
        check_forwarded(&name).map_err(|why| ConfigError::new(field.as_str(), why))?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn placement(name: &str, group: Option<String>, merge: bool) -> Result<Placement, ConfigError> {
    match (group, merge) {
        (Some(_), true) => Err(ConfigError::new(
            "merge",
            "a leg's body goes under its group or into the root, not both",
        )),
        (None, true) => Ok(Placement::Merge),
        (Some(group), false) => {
            if group.is_empty() || group == ERRORS_KEY {
                let why = format!("must be a member name other than \"\" and {ERRORS_KEY:?}");
                return Err(ConfigError::new("group", why));
            }
            Ok(Placement::Member(group))
        }
        (None, false) if name == ERRORS_KEY => Err(ConfigError::new(
            "name",
            format!("{ERRORS_KEY:?} is the member that lists failed legs"),
        )),
        (None, false) => Ok(Placement::Member(name.to_string())),
    }
}

fn check_target(text: &str) -> Result<JsonPath, ConfigError> {
    let path = JsonPath::parse(text).map_err(|why| ConfigError::new("target", why))?;
    if path.steps.contains(&Step::AnyIndex) {
        let why = format!("{text:?} must select one value: no [*] steps");
        return Err(ConfigError::new("target", why));
    }
    Ok(path)
}

fn compile_ops(body: &BodyOpsConfig) -> Result<BodyOps, ConfigError> {
    if body.on_unprocessable.is_some() {
        let why = "a leg whose body cannot be processed fails; there is nothing to choose";
        return Err(ConfigError::new("body.on_unprocessable", why));
    }
    BodyOps::compile(body).map_err(|e| e.within("body"))
}
