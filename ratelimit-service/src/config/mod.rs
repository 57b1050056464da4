//! Rate limit configuration: envoyproxy/ratelimit's YAML, validated once into a typed tree.
//!
//! One file holds one domain; a directory holds several (each `*.yaml`/`*.yml` file, not
//! recursive, hidden files skipped). Matching follows envoyproxy/ratelimit: a descriptor's
//! entries walk down the tree; at each level an exact `key`+`value` node wins over a wildcard
//! (`value: prefix*`, first in file order), which wins over a key-only node (no `value`); the
//! limit applies only if the walk consumes every entry.

mod build;
mod lease;
mod raw;

use crate::bucket::Algorithm;
use build::Builder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use lease::{LimitMode, DEFAULT_LEASE_DIVISOR, DEFAULT_LEASE_TTL};

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
    Week,
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
            Unit::Week => 7 * 86_400,
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
            "week" => Some(Unit::Week),
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
    /// Metrics label: the config path of the node, e.g. `database_users.user`; see
    /// [`Limit::stats_name`] for when a request's values change it.
    pub stats_path: String,
    /// The nodes from the domain down to this limit's node, one per descriptor entry.
    pub path: Vec<PathStep>,
    /// The node's `metadata` (a map). Kept, not returned: envoyproxy/ratelimit returns it only
    /// with RESPONSE_DYNAMIC_METADATA, and Envoy's response field for it is not in our proto.
    pub metadata: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// Names of limits this one replaces when both apply to one request.
    pub replaces: Vec<String>,
    /// How gateways take this limit's tokens through the QuotaLease API (`mode`, `lease_size`).
    pub mode: LimitMode,
    /// How long a lease's tokens may be held (`lease_ttl`; [`DEFAULT_LEASE_TTL`] for exact
    /// limits).
    pub lease_ttl: Duration,
}

/// One node on the path to a limit: how the descriptor entry at its depth matched, and the
/// node's flags that shape bucket keys and stats names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    pub key: String,
    pub value: StepValue,
    /// `value_to_metric`: the request's value shows in stats names.
    pub value_to_metric: bool,
    /// `share_threshold` (only on wildcards): every matching value shares one bucket.
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepValue {
    /// A key-only node: any value.
    Any,
    Exact(String),
    /// A value with `*`, as written.
    Wildcard(String),
}

impl PathStep {
    /// The pattern every matching value is counted under, for a `share_threshold` wildcard.
    fn shared_pattern(&self) -> Option<&str> {
        match &self.value {
            StepValue::Wildcard(p) if self.shared => Some(p),
            _ => None,
        }
    }
}

impl Limit {
    /// The value the request entry at `index` contributes to this limit's bucket key: the
    /// wildcard pattern under `share_threshold` (so every matching value shares one bucket, as
    /// envoyproxy/ratelimit does), else the request's own value.
    pub fn bucket_value<'a>(&'a self, index: usize, value: &'a str) -> &'a str {
        self.path
            .get(index)
            .and_then(PathStep::shared_pattern)
            .unwrap_or(value)
    }

    /// The stats name (envoyproxy/ratelimit's stats key without the domain) for a request's
    /// entries, or `None` when it is always [`Limit::stats_path`]. As there: `detailed_metric`
    /// names every entry with its value (`key_value`; a `share_threshold` wildcard keeps its
    /// pattern); otherwise `value_to_metric` puts the request's value in place of a key-only
    /// node's key or a wildcard's pattern (not under `share_threshold`).
    pub fn stats_name<'a, I>(&self, entries: I) -> Option<String>
    where
        I: Iterator<Item = (&'a str, &'a str)>,
    {
        let any_shared = self.path.iter().any(|s| s.shared);
        let runtime = |s: &PathStep| {
            s.value_to_metric && !s.shared && !matches!(s.value, StepValue::Exact(_))
        };
        if !self.detailed_metric && !self.path.iter().any(runtime) {
            return None;
        }
        let mut name = String::new();
        for (i, (key, value)) in entries.enumerate() {
            if i > 0 {
                name.push('.');
            }
            name.push_str(key);
            let step = self.path.get(i);
            let shown = match step.and_then(PathStep::shared_pattern) {
                Some(pattern) => Some(pattern),
                // envoyproxy/ratelimit writes `key_` for an empty value here, and only here.
                None if self.detailed_metric && !any_shared => Some(value),
                None if self.detailed_metric => Some(value).filter(|v| !v.is_empty()),
                None => match step.map(|s| (&s.value, runtime(s))) {
                    Some((_, true)) => Some(value).filter(|v| !v.is_empty()),
                    Some((StepValue::Exact(v) | StepValue::Wildcard(v), false)) => Some(v.as_str()),
                    _ => None,
                },
            };
            if let Some(v) = shown {
                name.push('_');
                name.push_str(v);
            }
        }
        Some(name)
    }

    pub fn period_secs(&self) -> u64 {
        self.unit.seconds() * u64::from(self.unit_multiplier)
    }

    /// Whole requests the bucket holds when full: `burst` for token buckets, else the limit.
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::TokenBucket => self.burst,
            _ => u64::from(self.requests_per_unit),
        }
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
    /// Values with `*` (any run of characters, the empty one too), in file order: the
    /// pattern as written, compiled.
    wildcards: Vec<(String, regex::Regex, Node)>,
    any: Option<Box<Node>>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Adds the nodes of `other` (another file's descriptors of the same domain); a node both
    /// define is refused with its key and value.
    fn merge(&mut self, other: Level) -> Result<(), String> {
        let duplicate = |key: &str, value: &str| {
            format!("duplicate descriptor key {key:?} with value {value:?} across merged files")
        };
        for (key, nodes) in other.by_key {
            let mine = self.by_key.entry(key.clone()).or_default();
            for (value, node) in nodes.exact {
                if mine.exact.contains_key(&value) {
                    return Err(duplicate(&key, &value));
                }
                mine.exact.insert(value, node);
            }
            for (pattern, re, node) in nodes.wildcards {
                if mine.wildcards.iter().any(|(p, _, _)| *p == pattern) {
                    return Err(duplicate(&key, &pattern));
                }
                mine.wildcards.push((pattern, re, node));
            }
            if let Some(node) = nodes.any {
                if mine.any.is_some() {
                    return Err(duplicate(&key, ""));
                }
                mine.any = Some(node);
            }
        }
        Ok(())
    }

    fn find(&self, key: &str, value: &str) -> Option<&Node> {
        let nodes = self.by_key.get(key)?;
        if let Some(node) = nodes.exact.get(value) {
            return Some(node);
        }
        if let Some((_, _, node)) = nodes.wildcards.iter().find(|(_, re, _)| re.is_match(value)) {
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
    /// The smallest `lease_ttl` of the domain's leased limits ([`DEFAULT_LEASE_TTL`] if none):
    /// how long a Lease answer of UNLIMITED holds.
    pub unlimited_ttl: Duration,
}

impl Domain {
    /// Every limit of the domain, in no particular order.
    pub fn limits(&self) -> Vec<&Limit> {
        fn walk<'a>(level: &'a Level, out: &mut Vec<&'a Limit>) {
            for nodes in level.by_key.values() {
                let all = nodes
                    .exact
                    .values()
                    .chain(nodes.wildcards.iter().map(|(_, _, n)| n))
                    .chain(nodes.any.as_deref());
                for node in all {
                    out.extend(node.limits.iter());
                    walk(&node.children, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

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

/// How files are combined into one configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Files naming the same domain add their descriptors to it (envoyproxy/ratelimit's
    /// `MERGE_DOMAIN_CONFIG`); a top-level descriptor both define is still refused. Off: a
    /// repeated domain is refused.
    pub merge_domains: bool,
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
        let mut builder = Builder::new(LoadOptions::default());
        builder.add(name, text)?;
        Ok(builder.finish())
    }

    /// Loads a file, or every `*.yaml`/`*.yml` file of a directory.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Config, ConfigError> {
        Config::from_sources_with(&read_sources(path)?, options)
    }

    /// Parses already-read sources (name, text), as returned by [`read_sources`].
    pub fn from_sources(sources: &[(String, String)]) -> Result<Config, ConfigError> {
        Config::from_sources_with(sources, LoadOptions::default())
    }

    /// [`Config::from_sources`] with options.
    pub fn from_sources_with(
        sources: &[(String, String)],
        options: LoadOptions,
    ) -> Result<Config, ConfigError> {
        let mut builder = Builder::new(options);
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
        let mut out = Vec::new();
        for domain in self.domains.values() {
            out.extend(domain.limits().into_iter().map(|l| (domain, l)));
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

#[cfg(test)]
mod envoyproxy_tests;
#[cfg(test)]
mod tests;
