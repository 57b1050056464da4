//! The YAML shape as written by users: envoyproxy/ratelimit's format plus our extensions.
//!
//! Everything is optional here so that validation (in `compile`) can say which field is
//! missing and where, instead of serde's generic "missing field".

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDomain {
    pub domain: Option<Scalar>,
    #[serde(default)]
    pub descriptors: Vec<RawDescriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDescriptor {
    pub key: Option<Scalar>,
    pub value: Option<Scalar>,
    pub rate_limit: Option<RawLimit>,
    /// Our extension: several limits on one descriptor node, all must pass.
    pub rate_limits: Option<Vec<RawLimit>>,
    #[serde(default)]
    pub descriptors: Vec<RawDescriptor>,
    #[serde(default)]
    pub shadow_mode: bool,
    #[serde(default)]
    pub detailed_metric: bool,
    /// envoyproxy/ratelimit: the request's value of this node's key shows in the stats name of
    /// the limits at and below this node (instead of the key alone or the wildcard pattern).
    #[serde(default)]
    pub value_to_metric: bool,
    /// envoyproxy/ratelimit: every value this node's wildcard matches shares one bucket, keyed
    /// by the pattern instead of the value.
    #[serde(default)]
    pub share_threshold: bool,
    /// envoyproxy/ratelimit: free-form data it returns in the response's dynamic metadata
    /// (only with its RESPONSE_DYNAMIC_METADATA setting, which this service does not offer).
    pub metadata: Option<serde_json::Value>,
    /// envoyproxy/ratelimit's quota mode: read only to refuse it with a reason.
    #[serde(default)]
    pub quota_mode: bool,
    /// envoyproxy/ratelimit: names of limits this node's limit replaces when both apply.
    #[serde(default)]
    pub replaces: Vec<RawReplaces>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplaces {
    pub name: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    pub unit: Option<Scalar>,
    pub requests_per_unit: Option<i64>,
    #[serde(default)]
    pub unlimited: bool,
    pub name: Option<Scalar>,
    pub unit_multiplier: Option<i64>,
    pub algorithm: Option<Scalar>,
    pub burst: Option<i64>,
    /// Our extension (leased quotas): `exact` (default) or `leased`.
    pub mode: Option<Scalar>,
    /// Tokens per lease (`mode: leased` only).
    pub lease_size: Option<i64>,
    /// How long a lease's tokens may be held, e.g. `5s` (`mode: leased` only).
    pub lease_ttl: Option<Scalar>,
    /// envoyproxy/ratelimit's limit-level form of the descriptor's `replaces`.
    #[serde(default)]
    pub replaces: Vec<RawReplaces>,
}

/// A YAML scalar read as text: Go's yaml.v2 (used by envoyproxy/ratelimit) accepts
/// `value: 123` or `value: true` for string fields, so we do too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}
