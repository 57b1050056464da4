//! Compiles the raw YAML of one domain into its descriptor tree, refusing bad fields with their
//! path and the reason.

use super::lease::{self, LeaseFields, LimitShape, DEFAULT_LEASE_TTL};
use super::raw::{RawDescriptor, RawDomain, RawLimit, RawReplaces, Scalar};
use super::{
    Config, ConfigError, Domain, Level, Limit, LoadOptions, Node, PathStep, StepValue, Unit,
};
use crate::bucket::Algorithm;
use crate::keys;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub(super) struct Builder {
    domains: HashMap<String, Domain>,
    next_id: usize,
    options: LoadOptions,
}

struct Ctx<'a> {
    file: &'a str,
    domain: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: &str, reason: impl fmt::Display) -> ConfigError {
        ConfigError::Field {
            file: self.file.to_owned(),
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl Builder {
    pub(super) fn new(options: LoadOptions) -> Self {
        Builder {
            domains: HashMap::new(),
            next_id: 0,
            options,
        }
    }

    pub(super) fn add(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        let raw: RawDomain = serde_yaml::from_str(text).map_err(|e| ConfigError::File {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
        let name = raw.domain.map(|s| s.0).unwrap_or_default();
        if name.is_empty() {
            return Err(ConfigError::Field {
                file: file.to_owned(),
                path: "domain".into(),
                reason: "must be a non-empty string".into(),
            });
        }
        if let (Some(existing), false) = (self.domains.get(&name), self.options.merge_domains) {
            return Err(ConfigError::Field {
                file: file.to_owned(),
                path: "domain".into(),
                reason: format!(
                    "duplicate domain {name:?} (already defined in {}; \
                     --merge-domain-config merges them)",
                    existing.file
                ),
            });
        }
        let ctx = Ctx {
            file,
            domain: &name,
        };
        let root = self.level(&ctx, "descriptors", "", &[], raw.descriptors)?;
        let domain = match self.domains.remove(&name) {
            Some(mut merged) => {
                merged
                    .root
                    .merge(root)
                    .map_err(|reason| ctx.err("descriptors", reason))?;
                merged
            }
            None => Domain {
                name: name.clone(),
                file: file.to_owned(),
                root,
                unlimited_ttl: DEFAULT_LEASE_TTL,
            },
        };
        let mut domain = domain;
        domain.unlimited_ttl = domain
            .limits()
            .iter()
            .filter(|l| l.mode.is_leased())
            .map(|l| l.lease_ttl)
            .min()
            .unwrap_or(DEFAULT_LEASE_TTL);
        self.domains.insert(name, domain);
        Ok(())
    }

    fn level(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        stats_parent: &str,
        parent_steps: &[PathStep],
        descriptors: Vec<RawDescriptor>,
    ) -> Result<Level, ConfigError> {
        let mut level = Level::default();
        for (i, raw) in descriptors.into_iter().enumerate() {
            let here = format!("{path}[{i}]");
            let key = raw.key.clone().map(|s| s.0).unwrap_or_default();
            if key.is_empty() {
                return Err(ctx.err(&here, "descriptor has no `key`"));
            }
            let value = raw.value.clone().map(|s| s.0).unwrap_or_default();
            let segment = if value.is_empty() {
                key.clone()
            } else {
                format!("{key}_{value}")
            };
            let stats_path = if stats_parent.is_empty() {
                segment
            } else {
                format!("{stats_parent}.{segment}")
            };
            let step = path_step(ctx, &here, &key, &value, &raw)?;
            let steps: Vec<PathStep> = parent_steps.iter().cloned().chain([step]).collect();
            let node = self.node(ctx, &here, &stats_path, steps, raw)?;
            let nodes = level.by_key.entry(key.clone()).or_default();
            let duplicate = || {
                ctx.err(
                    &here,
                    format!("duplicate descriptor key {key:?} with value {value:?} among siblings"),
                )
            };
            if value.is_empty() {
                if nodes.any.is_some() {
                    return Err(duplicate());
                }
                nodes.any = Some(Box::new(node));
            } else if value.contains('*') {
                if nodes.wildcards.iter().any(|(p, _, _)| *p == value) {
                    return Err(duplicate());
                }
                let re = wildcard(&value).map_err(|e| ctx.err(&here, e))?;
                nodes.wildcards.push((value, re, node));
            } else {
                if nodes.exact.contains_key(&value) {
                    return Err(duplicate());
                }
                nodes.exact.insert(value, node);
            }
        }
        Ok(level)
    }

    fn node(
        &mut self,
        ctx: &Ctx<'_>,
        here: &str,
        stats_path: &str,
        steps: Vec<PathStep>,
        raw: RawDescriptor,
    ) -> Result<Node, ConfigError> {
        let mut raw_limits: Vec<(String, RawLimit)> = Vec::new();
        match (raw.rate_limit, raw.rate_limits) {
            (Some(_), Some(_)) => {
                return Err(ctx.err(here, "use either `rate_limit` or `rate_limits`, not both"))
            }
            (Some(one), None) => raw_limits.push((format!("{here}.rate_limit"), one)),
            (None, Some(many)) => {
                if many.is_empty() {
                    return Err(ctx.err(&format!("{here}.rate_limits"), "must not be empty"));
                }
                for (i, limit) in many.into_iter().enumerate() {
                    raw_limits.push((format!("{here}.rate_limits[{i}]"), limit));
                }
            }
            (None, None) => {}
        }
        let replaces = replaced_names(ctx, here, raw.replaces)?;
        let metadata = node_metadata(ctx, here, raw.metadata)?;
        let mut limits = Vec::with_capacity(raw_limits.len());
        for (index, (path, raw_limit)) in raw_limits.into_iter().enumerate() {
            let limit = self.limit(
                ctx,
                &path,
                index,
                raw_limit,
                NodeFlags {
                    shadow_mode: raw.shadow_mode,
                    detailed_metric: raw.detailed_metric,
                    stats_path,
                    steps: &steps,
                    metadata: metadata.as_ref(),
                    replaces: &replaces,
                },
            )?;
            limits.push(limit);
        }
        let children = self.level(
            ctx,
            &format!("{here}.descriptors"),
            stats_path,
            &steps,
            raw.descriptors,
        )?;
        Ok(Node { limits, children })
    }

    fn limit(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        index: usize,
        raw: RawLimit,
        flags: NodeFlags<'_>,
    ) -> Result<Limit, ConfigError> {
        let unit = limit_unit(ctx, path, raw.unit, raw.unlimited)?;
        // Omitted, it is 0 (every request over the limit), as in envoyproxy/ratelimit.
        let requests_per_unit = match raw.requests_per_unit {
            None => 0,
            Some(n) => u32::try_from(n).map_err(|_| {
                ctx.err(
                    &format!("{path}.requests_per_unit"),
                    format!("must be between 0 and {}, got {n}", u32::MAX),
                )
            })?,
        };
        let positive = |field: &str, value: Option<i64>, default: u64| match value {
            None => Ok(default),
            Some(n) if n >= 1 && n <= i64::from(u32::MAX) => Ok(n as u64),
            Some(n) => Err(ctx.err(
                &format!("{path}.{field}"),
                format!("must be between 1 and {}, got {n}", u32::MAX),
            )),
        };
        let unit_multiplier = positive("unit_multiplier", raw.unit_multiplier, 1)? as u32;
        let burst = positive("burst", raw.burst, u64::from(requests_per_unit))?;
        let algorithm = limit_algorithm(ctx, path, raw.algorithm)?;
        if raw.burst.is_some() && algorithm != Algorithm::TokenBucket {
            return Err(ctx.err(
                &format!("{path}.burst"),
                format!("only applies to token_bucket, not {}", algorithm.name()),
            ));
        }
        let (mode, lease_ttl) = lease::compile(
            LeaseFields {
                mode: raw.mode.map(|s| s.0),
                lease_size: raw.lease_size,
                lease_ttl: raw.lease_ttl.map(|s| s.0),
            },
            &LimitShape {
                unlimited: raw.unlimited,
                requests_per_unit,
                burst: (algorithm == Algorithm::TokenBucket).then_some(burst),
            },
        )
        .map_err(|(field, reason)| ctx.err(&format!("{path}.{field}"), reason))?;
        let period = unit.seconds() * u64::from(unit_multiplier);
        let name = raw.name.map(|s| s.0).filter(|n| !n.is_empty());
        let replaces = limit_replaces(ctx, path, flags.replaces, raw.replaces, name.as_deref())?;
        let id = self.next_id;
        self.next_id += 1;
        Ok(Limit {
            id,
            name,
            unit,
            unit_multiplier,
            requests_per_unit,
            algorithm,
            burst,
            unlimited: raw.unlimited,
            shadow_mode: flags.shadow_mode,
            detailed_metric: flags.detailed_metric,
            key_prefix: keys::limit_prefix(ctx.domain, algorithm, period, index),
            stats_path: flags.stats_path.to_owned(),
            path: flags.steps.to_vec(),
            metadata: flags.metadata.cloned(),
            replaces,
            mode,
            lease_ttl,
        })
    }

    pub(super) fn finish(self) -> Config {
        Config {
            domains: self.domains,
            limit_count: self.next_id,
        }
    }
}

/// `unit`: required unless `unlimited: true`, where it must be absent.
fn limit_unit(
    ctx: &Ctx<'_>,
    path: &str,
    raw: Option<Scalar>,
    unlimited: bool,
) -> Result<Unit, ConfigError> {
    let unit_text = raw.map(|s| s.0).unwrap_or_default();
    if unlimited {
        if !unit_text.is_empty() {
            return Err(ctx.err(
                &format!("{path}.unit"),
                "must not be set when `unlimited: true`",
            ));
        }
        return Ok(Unit::Second);
    }
    if unit_text.is_empty() {
        return Err(ctx.err(
            &format!("{path}.unit"),
            "missing (expected second, minute, hour, day, week, month or year)",
        ));
    }
    Unit::parse(&unit_text).ok_or_else(|| {
        ctx.err(
            &format!("{path}.unit"),
            format!(
                "unknown unit {unit_text:?} (expected second, minute, hour, day, week, month or year)"
            ),
        )
    })
}

fn limit_algorithm(
    ctx: &Ctx<'_>,
    path: &str,
    raw: Option<Scalar>,
) -> Result<Algorithm, ConfigError> {
    match raw.map(|s| s.0).as_deref() {
        None | Some("token_bucket") => Ok(Algorithm::TokenBucket),
        Some("fixed_window") => Ok(Algorithm::FixedWindow),
        Some("sliding_window") => Ok(Algorithm::SlidingWindow),
        Some(other) => Err(ctx.err(
            &format!("{path}.algorithm"),
            format!(
                "unknown algorithm {other:?} (expected token_bucket, fixed_window or sliding_window)"
            ),
        )),
    }
}

struct NodeFlags<'a> {
    shadow_mode: bool,
    detailed_metric: bool,
    stats_path: &'a str,
    steps: &'a [PathStep],
    metadata: Option<&'a Arc<serde_json::Map<String, serde_json::Value>>>,
    replaces: &'a [String],
}

/// How the descriptor at `here` matches, with the flags that shape bucket keys and stats names;
/// refuses `share_threshold` off a wildcard and `quota_mode`.
fn path_step(
    ctx: &Ctx<'_>,
    here: &str,
    key: &str,
    value: &str,
    raw: &RawDescriptor,
) -> Result<PathStep, ConfigError> {
    if raw.quota_mode {
        return Err(ctx.err(
            &format!("{here}.quota_mode"),
            "not supported: envoyproxy/ratelimit's quota mode (a request is refused only when \
             every quota-mode limit it meets is over) is not implemented here; use \
             `shadow_mode: true` to count this limit without blocking, or remove the field",
        ));
    }
    let value = if value.is_empty() {
        StepValue::Any
    } else if value.contains('*') {
        StepValue::Wildcard(value.to_owned())
    } else {
        StepValue::Exact(value.to_owned())
    };
    if raw.share_threshold && !matches!(value, StepValue::Wildcard(_)) {
        return Err(ctx.err(
            &format!("{here}.share_threshold"),
            format!(
                "only applies to a wildcard `value` (one with `*`), and {key:?} has {}",
                match &value {
                    StepValue::Exact(v) => format!("the value {v:?}"),
                    _ => "no value".to_owned(),
                }
            ),
        ));
    }
    Ok(PathStep {
        key: key.to_owned(),
        value,
        value_to_metric: raw.value_to_metric,
        shared: raw.share_threshold,
    })
}

/// `metadata`: a map of anything (returned as is), or absent.
fn node_metadata(
    ctx: &Ctx<'_>,
    here: &str,
    raw: Option<serde_json::Value>,
) -> Result<Option<Arc<serde_json::Map<String, serde_json::Value>>>, ConfigError> {
    match raw {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(map)) if map.is_empty() => Ok(None),
        Some(serde_json::Value::Object(map)) => Ok(Some(Arc::new(map))),
        Some(other) => Err(ctx.err(
            &format!("{here}.metadata"),
            format!("must be a map (key: value, ...), got {other}"),
        )),
    }
}

/// A descriptor value with `*` as a whole-value match: each `*` any run of characters (the
/// empty one too), everything else literal (`foo*bar*baz`, `bar*b`, `*`).
fn wildcard(value: &str) -> Result<regex::Regex, String> {
    let literal: Vec<String> = value.split('*').map(regex::escape).collect();
    regex::Regex::new(&format!("^{}$", literal.join("(?s:.*)")))
        .map_err(|e| format!("wildcard value {value:?}: {e}"))
}

/// The names a limit replaces: its node's `replaces` and its own; naming itself is refused.
fn limit_replaces(
    ctx: &Ctx<'_>,
    path: &str,
    node: &[String],
    own: Vec<RawReplaces>,
    name: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let replaces: Vec<String> = (node.iter().cloned())
        .chain(replaced_names(ctx, path, own)?)
        .collect();
    if let Some(n) = name.filter(|n| replaces.iter().any(|r| r == n)) {
        // As envoyproxy/ratelimit: a limit that replaced itself would never apply.
        return Err(ctx.err(
            &format!("{path}.replaces"),
            format!("the limit {n:?} replaces itself"),
        ));
    }
    Ok(replaces)
}

/// The names a `replaces` list (of a descriptor, or of its `rate_limit`) names; each must be set.
fn replaced_names(
    ctx: &Ctx<'_>,
    here: &str,
    list: Vec<RawReplaces>,
) -> Result<Vec<String>, ConfigError> {
    let mut names = Vec::with_capacity(list.len());
    for (i, r) in list.into_iter().enumerate() {
        match r.name.map(|s| s.0).filter(|n| !n.is_empty()) {
            Some(name) => names.push(name),
            None => return Err(ctx.err(&format!("{here}.replaces[{i}].name"), "must be set")),
        }
    }
    Ok(names)
}
