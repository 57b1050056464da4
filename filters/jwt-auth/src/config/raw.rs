//! The configuration as written: serde types, unknown fields refused everywhere. Validation
//! (`super::validate`, `super::rules`) turns them into the types of [`super`].

use super::native::{
    RawAsyncFetch, RawHttpUri, RawJwtCacheConfig, RawProviderAudiences, RawRetryPolicy,
};
use filter_core::route::UniqueMap;
use filter_core::{RequestMatch, StringMatch};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A duration in milliseconds: `"600s"`, `"0.5s"` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Millis(pub(super) u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECT: &str = "a duration such as \"600s\" or a number of seconds";
        fn from_secs<E: de::Error>(secs: f64) -> Result<Millis, E> {
            if secs.is_finite() && (0.0..=1e10).contains(&secs) {
                Ok(Millis((secs * 1000.0).round() as u64))
            } else {
                Err(E::custom(format!(
                    "expected {EXPECT}, not a negative or huge number"
                )))
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECT)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                from_secs(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                from_secs(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Millis, E> {
                from_secs(v)
            }
            /// A `google.protobuf.Duration` as Envoy's YAML examples write it:
            /// `{seconds: 300}` or `{seconds: 0, nanos: 500000000}`.
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Millis, A::Error> {
                let (mut secs, mut nanos) = (0u64, 0u64);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "seconds" => secs = map.next_value::<SecondsField>()?.0,
                        "nanos" => nanos = map.next_value()?,
                        other => {
                            return Err(de::Error::unknown_field(other, &["seconds", "nanos"]))
                        }
                    }
                }
                if nanos >= 1_000_000_000 {
                    return Err(de::Error::custom("nanos must be below 1000000000"));
                }
                from_secs(secs as f64 + nanos as f64 / 1e9)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                let num = v.strip_suffix('s').filter(|n| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                });
                match num.and_then(|n| n.parse::<f64>().ok()) {
                    Some(secs) => from_secs(secs),
                    None => Err(E::custom(format!("expected {EXPECT}, got {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `seconds` of a Duration object: an integer, or a string holding one (proto-JSON writes
/// 64-bit integers as strings).
struct SecondsField(u64);

impl<'de> Deserialize<'de> for SecondsField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum N {
            Int(u64),
            Text(String),
        }
        match N::deserialize(d)? {
            N::Int(n) => Ok(SecondsField(n)),
            N::Text(t) => t
                .parse()
                .map(SecondsField)
                .map_err(|_| de::Error::custom(format!("seconds: {t:?} is not a whole number"))),
        }
    }
}

/// A list of strings, or one string for a list of one: Envoy's YAML loader reads a scalar
/// where a repeated field is expected (its own examples write `audiences: audience1`).
pub(super) fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// A native filter's `typed_config` pasted with its type: must be `JwtAuthentication`.
    #[serde(rename = "@type", default)]
    pub(super) type_url: Option<String>,
    pub(super) providers: BTreeMap<String, RawProvider>,
    /// Native: requirements by name, for `rules[].requirement_name` or (without rules) for
    /// the route to name, as `requirements` are.
    #[serde(default)]
    pub(super) requirement_map: Option<UniqueMap<RawRequirement>>,
    #[serde(default)]
    pub(super) filter_state_rules: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) strip_failure_response: Option<bool>,
    #[serde(default)]
    pub(super) stat_prefix: Option<String>,
    /// Deprecated: requirements chosen by the filter's own matchers.
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    /// Named requirements, chosen by the route Envoy matched (its `edgegate.jwt` metadata, or
    /// its name through `routes`).
    #[serde(default)]
    pub(super) requirements: Option<UniqueMap<RawPolicy>>,
    /// Route name -> requirement name (or `public`), for routes that carry no metadata.
    #[serde(default)]
    pub(super) routes: UniqueMap<String>,
    #[serde(default)]
    pub(super) max_token_bytes: Option<usize>,
    #[serde(default)]
    pub(super) realm: Option<String>,
    #[serde(default)]
    pub(super) bypass_cors_preflight: Option<bool>,
    #[serde(default)]
    pub(super) token_cache: Option<RawTokenCache>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenCache {
    #[serde(default)]
    pub(super) max_entries: Option<usize>,
    #[serde(default)]
    pub(super) max_ttl: Option<Millis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    #[serde(default)]
    pub(super) issuer: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(super) audiences: Vec<String>,
    #[serde(default)]
    pub(super) subjects: Option<StringMatch>,
    #[serde(default)]
    pub(super) require_expiration: bool,
    #[serde(default)]
    pub(super) max_lifetime: Option<Millis>,
    #[serde(default)]
    pub(super) clock_skew_seconds: Option<u64>,
    #[serde(default)]
    pub(super) remote_jwks: Option<RawRemoteJwks>,
    #[serde(default)]
    pub(super) local_jwks: Option<RawLocalJwks>,
    /// Opaque tokens checked by the authorization server (RFC 7662), in place of keys.
    #[serde(default)]
    pub(super) introspection: Option<super::introspection::RawIntrospection>,
    #[serde(default)]
    pub(super) from_headers: Vec<RawHeaderSource>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(super) from_params: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(super) from_cookies: Vec<String>,
    #[serde(default)]
    pub(super) forward: bool,
    #[serde(default)]
    pub(super) forward_payload_header: Option<String>,
    /// Native: pad the base64url payload of `forward_payload_header` with `=`.
    #[serde(default)]
    pub(super) pad_forward_payload_header: bool,
    #[serde(default)]
    pub(super) jwt_cache_config: Option<RawJwtCacheConfig>,
    #[serde(default)]
    pub(super) claim_to_headers: Vec<RawClaimToHeader>,
    #[serde(default)]
    pub(super) tenant_claim: Option<String>,
    #[serde(default)]
    pub(super) tenant_header: Option<String>,
    #[serde(default)]
    pub(super) tenant_format: Option<RawClaimFormat>,
    #[serde(default)]
    pub(super) sub_format: Option<RawClaimFormat>,
    #[serde(default)]
    pub(super) max_rsa_key_bits: Option<u32>,
    #[serde(default)]
    pub(super) revocation: Option<RawRevocation>,
    // Native fields refused with a reason (`native::refused_provider_field`).
    #[serde(default)]
    pub(super) payload_in_metadata: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) header_in_metadata: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) failed_status_in_metadata: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) normalize_payload_in_metadata: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) clear_route_cache: Option<bool>,
}

/// How an identity claim must look (`sub_format`, `tenant_format`, and the same fields on
/// each `claim_to_headers` entry).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimFormat {
    #[serde(default)]
    pub(super) optional: bool,
    #[serde(default)]
    pub(super) charset: Option<String>,
    #[serde(default)]
    pub(super) max_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    pub(super) cluster: String,
    #[serde(default)]
    pub(super) sync_interval: Option<Millis>,
    #[serde(default)]
    pub(super) timeout: Option<Millis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoteJwks {
    /// Native: `{uri, cluster, timeout}`, in place of our flat fields.
    #[serde(default)]
    pub(super) http_uri: Option<RawHttpUri>,
    #[serde(default)]
    pub(super) async_fetch: Option<RawAsyncFetch>,
    #[serde(default)]
    pub(super) retry_policy: Option<RawRetryPolicy>,
    #[serde(default)]
    pub(super) cluster: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) uri: Option<String>,
    #[serde(default)]
    pub(super) timeout: Option<Millis>,
    #[serde(default)]
    pub(super) cache_duration: Option<Millis>,
    #[serde(default)]
    pub(super) max_stale: Option<Millis>,
    #[serde(default)]
    pub(super) kid_refetch_interval: Option<Millis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocalJwks {
    /// The JWKS as a JSON string (Envoy's `inline_string`) or as an object.
    #[serde(alias = "inline_string", default)]
    pub(super) inline: Option<Value>,
    /// Native: the JWKS base64-encoded.
    #[serde(default)]
    pub(super) inline_bytes: Option<String>,
    /// Native: refused (a wasm filter reads no files).
    #[serde(default)]
    pub(super) filename: Option<String>,
    /// Native: refused (a wasm filter reads no environment).
    #[serde(default)]
    pub(super) environment_variable: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderSource {
    pub(super) name: String,
    #[serde(default)]
    pub(super) value_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimToHeader {
    pub(super) header_name: String,
    pub(super) claim_name: String,
    #[serde(default)]
    pub(super) optional: bool,
    #[serde(default)]
    pub(super) charset: Option<String>,
    #[serde(default)]
    pub(super) max_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(rename = "match", default)]
    pub(super) matcher: RequestMatch,
    #[serde(default)]
    pub(super) requires: Option<RawRequirement>,
    /// Native: a key of `requirement_map`, in place of `requires`.
    #[serde(default)]
    pub(super) requirement_name: Option<String>,
    #[serde(default)]
    pub(super) required_scopes: Vec<String>,
    #[serde(default)]
    pub(super) required_claims: Vec<RawClaimCondition>,
}

/// A named requirement: a rule without a match (the route chose it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub(super) requires: Option<RawRequirement>,
    #[serde(default)]
    pub(super) required_scopes: Vec<String>,
    #[serde(default)]
    pub(super) required_claims: Vec<RawClaimCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequirement {
    #[serde(default)]
    pub(super) provider_name: Option<String>,
    #[serde(default)]
    pub(super) provider_and_audiences: Option<RawProviderAudiences>,
    /// Native: refused (claims are never forwarded from a token that was not verified).
    #[serde(default)]
    pub(super) extract_only_without_validation: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) requires_any: Option<RawRequirementList>,
    #[serde(default)]
    pub(super) requires_all: Option<RawRequirementList>,
    #[serde(default)]
    pub(super) allow_missing: Option<Empty>,
    #[serde(default)]
    pub(super) allow_missing_or_failed: Option<Empty>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequirementList {
    pub(super) requirements: Vec<RawRequirement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimCondition {
    pub(super) name: String,
    #[serde(default)]
    pub(super) contains: Option<String>,
    #[serde(default)]
    pub(super) equals: Option<String>,
}
