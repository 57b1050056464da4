//! Rate limit configuration: envoyproxy/ratelimit's YAML, validated once into a typed tree.
//!
//! One file holds one domain; a directory holds several (each `*.yaml`/`*.yml` file, not
//! recursive, hidden files skipped). Matching follows envoyproxy/ratelimit: a descriptor's
//! entries walk down the tree; at each level an exact `key`+`value` node wins over a wildcard
//! (`value: prefix*`, first in file order), which wins over a key-only node (no `value`); the
//! limit applies only if the walk consumes every entry.

mod raw;

use crate::bucket::Algorithm;
use crate::keys;
use raw::{RawDescriptor, RawDomain, RawLimit};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem, naming the file, the field path and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {path}: {reason}")]
    Field {
        file: String,
        path: String,
        reason: String,
    },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

/// Time unit of a configured limit (envoyproxy/ratelimit's units; a month is 30 days and a year
/// 365 days, as there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl Unit {
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
            Unit::Month => 30 * 86_400,
            Unit::Year => 365 * 86_400,
        }
    }

    fn parse(text: &str) -> Option<Unit> {
        match text.to_ascii_lowercase().as_str() {
            "second" => Some(Unit::Second),
            "minute" => Some(Unit::Minute),
            "hour" => Some(Unit::Hour),
            "day" => Some(Unit::Day),
            "month" => Some(Unit::Month),
            "year" => Some(Unit::Year),
            _ => None,
        }
    }
}

/// One compiled limit. `id` is dense over the whole config (metrics use it as an index).
#[derive(Debug, Clone)]
pub struct Limit {
    pub id: usize,
    pub name: Option<String>,
    pub unit: Unit,
    pub unit_multiplier: u32,
    /// 0 is allowed, as in envoyproxy/ratelimit: every request is over limit.
    pub requests_per_unit: u32,
    pub algorithm: Algorithm,
    /// Token bucket capacity (defaults to `requests_per_unit`).
    pub burst: u64,
    pub unlimited: bool,
    pub shadow_mode: bool,
    pub detailed_metric: bool,
    /// `rl:{domain}:<tag>:` — see [`crate::keys`].
    pub key_prefix: String,
    /// Metrics label: the config path of the node, e.g. `database_users.user`.
    pub stats_path: String,
    /// Names of limits this one replaces when both apply to one request.
    pub replaces: Vec<String>,
}

impl Limit {
    pub fn period_secs(&self) -> u64 {
        self.unit.seconds() * u64::from(self.unit_multiplier)
    }
}

/// A node of the descriptor tree.
#[derive(Debug, Default)]
pub struct Node {
    pub limits: Vec<Limit>,
    children: Level,
}

#[derive(Debug, Default)]
struct Level {
    by_key: HashMap<String, KeyNodes>,
}

#[derive(Debug, Default)]
struct KeyNodes {
    exact: HashMap<String, Node>,
    /// `(prefix without '*', node)` in file order.
    wildcards: Vec<(String, Node)>,
    any: Option<Box<Node>>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn find(&self, key: &str, value: &str) -> Option<&Node> {
        let nodes = self.by_key.get(key)?;
        if let Some(node) = nodes.exact.get(value) {
            return Some(node);
        }
        if let Some((_, node)) = nodes
            .wildcards
            .iter()
            .find(|(prefix, _)| value.starts_with(prefix.as_str()))
        {
            return Some(node);
        }
        nodes.any.as_deref()
    }
}

/// One domain's compiled tree.
#[derive(Debug)]
pub struct Domain {
    pub name: String,
    /// The file it came from, for messages.
    pub file: String,
    root: Level,
}

impl Domain {
    /// The node whose limits apply to a descriptor, if any (envoyproxy/ratelimit semantics).
    pub fn find<'a, I>(&self, entries: I) -> Option<&Node>
    where
        I: ExactSizeIterator<Item = (&'a str, &'a str)>,
    {
        let last = entries.len().checked_sub(1)?;
        let mut level = &self.root;
        for (i, (key, value)) in entries.enumerate() {
            let node = level.find(key, value)?;
            if i == last {
                return (!node.limits.is_empty()).then_some(node);
            }
            if node.children.is_empty() {
                return None;
            }
            level = &node.children;
        }
        None
    }
}

/// The whole configuration: every domain, compiled.
#[derive(Debug, Default)]
pub struct Config {
    domains: HashMap<String, Domain>,
    limit_count: usize,
}

impl Config {
    /// Parses one file's text (`name` is used in messages).
    pub fn from_yaml_str(name: &str, text: &str) -> Result<Config, ConfigError> {
        let mut builder = Builder::default();
        builder.add(name, text)?;
        Ok(builder.finish())
    }

    /// Loads a file, or every `*.yaml`/`*.yml` file of a directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut builder = Builder::default();
        for (name, text) in read_sources(path)? {
            builder.add(&name, &text)?;
        }
        Ok(builder.finish())
    }

    /// Parses already-read sources (name, text), as returned by [`read_sources`].
    pub fn from_sources(sources: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut builder = Builder::default();
        for (name, text) in sources {
            builder.add(name, text)?;
        }
        Ok(builder.finish())
    }

    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.get(name)
    }

    pub fn domains(&self) -> impl Iterator<Item = &Domain> {
        self.domains.values()
    }

    /// Number of limits; every `Limit::id` is below it.
    pub fn limit_count(&self) -> usize {
        self.limit_count
    }

    /// Every limit, in no particular order.
    pub fn limits(&self) -> Vec<(&Domain, &Limit)> {
        fn walk<'a>(domain: &'a Domain, level: &'a Level, out: &mut Vec<(&'a Domain, &'a Limit)>) {
            for nodes in level.by_key.values() {
                let all = nodes
                    .exact
                    .values()
                    .chain(nodes.wildcards.iter().map(|(_, n)| n))
                    .chain(nodes.any.as_deref());
                for node in all {
                    out.extend(node.limits.iter().map(|l| (domain, l)));
                    walk(domain, &node.children, out);
                }
            }
        }
        let mut out = Vec::new();
        for domain in self.domains.values() {
            walk(domain, &domain.root, &mut out);
        }
        out
    }
}

/// Reads a config file, or the config files of a directory, sorted by name.
pub fn read_sources(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let display = path.display().to_string();
    let io_error = |file: &str, e: std::io::Error| ConfigError::File {
        file: file.to_owned(),
        reason: format!("cannot read: {e}"),
    };
    let meta = std::fs::metadata(path).map_err(|e| io_error(&display, e))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| io_error(&display, e))? {
            let entry = entry.map_err(|e| io_error(&display, e))?;
            let file = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if is_yaml && !name.starts_with('.') && file.is_file() {
                files.push(file);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|file| {
            let name = file.display().to_string();
            std::fs::read_to_string(&file)
                .map(|text| (name.clone(), text))
                .map_err(|e| io_error(&name, e))
        })
        .collect()
}

#[derive(Default)]
struct Builder {
    domains: HashMap<String, Domain>,
    next_id: usize,
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
    fn add(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
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
        if let Some(existing) = self.domains.get(&name) {
            return Err(ConfigError::Field {
                file: file.to_owned(),
                path: "domain".into(),
                reason: format!(
                    "duplicate domain {name:?} (already defined in {})",
                    existing.file
                ),
            });
        }
        let ctx = Ctx {
            file,
            domain: &name,
        };
        let root = self.level(&ctx, "descriptors", "", raw.descriptors)?;
        self.domains.insert(
            name.clone(),
            Domain {
                name,
                file: file.to_owned(),
                root,
            },
        );
        Ok(())
    }

    fn level(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        stats_parent: &str,
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
            let node = self.node(ctx, &here, &stats_path, raw)?;
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
            } else if let Some(prefix) = value.strip_suffix('*') {
                if nodes.wildcards.iter().any(|(p, _)| p == prefix) {
                    return Err(duplicate());
                }
                nodes.wildcards.push((prefix.to_owned(), node));
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
        let mut replaces = Vec::new();
        for (i, r) in raw.replaces.into_iter().enumerate() {
            match r.name.map(|s| s.0).filter(|n| !n.is_empty()) {
                Some(name) => replaces.push(name),
                None => return Err(ctx.err(&format!("{here}.replaces[{i}].name"), "must be set")),
            }
        }
        let mut limits = Vec::with_capacity(raw_limits.len());
        for (index, (path, raw_limit)) in raw_limits.into_iter().enumerate() {
            let limit = self.limit(
                ctx,
                &path,
                index,
                raw_limit,
                NodeFlags {
                    shadow_mode: raw.shadow_mode,
                    detailed_metric: raw.detailed_metric || raw.value_to_metric,
                    stats_path,
                    replaces: &replaces,
                },
            )?;
            limits.push(limit);
        }
        let children = self.level(
            ctx,
            &format!("{here}.descriptors"),
            stats_path,
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
        let unit_text = raw.unit.map(|s| s.0).unwrap_or_default();
        let unit = if raw.unlimited {
            if !unit_text.is_empty() {
                return Err(ctx.err(
                    &format!("{path}.unit"),
                    "must not be set when `unlimited: true`",
                ));
            }
            Unit::Second
        } else if unit_text.is_empty() {
            return Err(ctx.err(
                &format!("{path}.unit"),
                "missing (expected second, minute, hour, day, month or year)",
            ));
        } else {
            Unit::parse(&unit_text).ok_or_else(|| {
                ctx.err(
                    &format!("{path}.unit"),
                    format!(
                        "unknown unit {unit_text:?} (expected second, minute, hour, day, month or year)"
                    ),
                )
            })?
        };
        let requests_per_unit = match raw.requests_per_unit {
            None if raw.unlimited => 0,
            None => return Err(ctx.err(&format!("{path}.requests_per_unit"), "missing")),
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
        let algorithm = match raw.algorithm.map(|s| s.0).as_deref() {
            None | Some("token_bucket") => Algorithm::TokenBucket,
            Some("fixed_window") => Algorithm::FixedWindow,
            Some("sliding_window") => Algorithm::SlidingWindow,
            Some(other) => {
                return Err(ctx.err(
                    &format!("{path}.algorithm"),
                    format!(
                        "unknown algorithm {other:?} (expected token_bucket, fixed_window or sliding_window)"
                    ),
                ))
            }
        };
        if raw.burst.is_some() && algorithm != Algorithm::TokenBucket {
            return Err(ctx.err(
                &format!("{path}.burst"),
                format!("only applies to token_bucket, not {}", algorithm.name()),
            ));
        }
        let period = unit.seconds() * u64::from(unit_multiplier);
        let id = self.next_id;
        self.next_id += 1;
        Ok(Limit {
            id,
            name: raw.name.map(|s| s.0).filter(|n| !n.is_empty()),
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
            replaces: flags.replaces.to_vec(),
        })
    }

    fn finish(self) -> Config {
        Config {
            domains: self.domains,
            limit_count: self.next_id,
        }
    }
}

struct NodeFlags<'a> {
    shadow_mode: bool,
    detailed_metric: bool,
    stats_path: &'a str,
    replaces: &'a [String],
}

#[cfg(test)]
mod tests;
