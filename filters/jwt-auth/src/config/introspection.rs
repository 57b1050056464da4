//! A provider's `introspection` (RFC 7662): as written, and validated.

use super::raw::Millis;
use super::validate::{err, split_uri};
use crate::introspection::{IntrospectionConfig, Secret, UNAVAILABLE_401, UNAVAILABLE_503};
use filter_core::ConfigError;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntrospection {
    pub(super) cluster: String,
    #[serde(default)]
    pub(super) uri: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) client_id: Option<String>,
    #[serde(default)]
    pub(super) client_secret: Option<String>,
    #[serde(default)]
    pub(super) timeout: Option<Millis>,
    #[serde(default)]
    pub(super) cache_duration: Option<Millis>,
    #[serde(default)]
    pub(super) negative_cache_duration: Option<Millis>,
    #[serde(default)]
    pub(super) max_cache_entries: Option<usize>,
    #[serde(default)]
    pub(super) unavailable_status: Option<u32>,
    /// `all` (default): every token of this provider; `opaque`: tokens shaped like a JWT are
    /// left to the other providers.
    #[serde(default)]
    pub(super) tokens: Option<String>,
}

impl RawIntrospection {
    pub(super) fn validate(self) -> Result<IntrospectionConfig, ConfigError> {
        if self.cluster.is_empty() {
            return Err(err("cluster", "must name an Envoy cluster"));
        }
        let (authority, path) = match (self.path, self.uri) {
            (Some(p), None) => (self.cluster.clone(), p),
            (None, Some(uri)) => split_uri(&uri).map_err(|why| err("uri", why))?,
            _ => return Err(err("path", "give exactly one of path and uri")),
        };
        if !path.starts_with('/') {
            return Err(err("path", "must start with '/'"));
        }
        let client_secret = match (&self.client_id, self.client_secret) {
            (Some(_), Some(s)) if !s.is_empty() => Some(Secret(s)),
            (None, None) => None,
            _ => {
                return Err(err(
                    "client_secret",
                    "give client_id and a non-empty client_secret together, or neither (the \
                     cluster may add the credentials: credential_injector)",
                ))
            }
        };
        let ms = |m: Option<Millis>, default: u64| m.map_or(default, |m| m.0);
        let timeout_ms = ms(self.timeout, 1_000);
        if !(1..=60_000).contains(&timeout_ms) {
            return Err(err("timeout", "must be between 1ms and 60s"));
        }
        let cache_ms = ms(self.cache_duration, 300_000);
        let negative_ms = ms(self.negative_cache_duration, 10_000);
        let max_entries = self.max_cache_entries.unwrap_or(10_000);
        if !(1..=1_000_000).contains(&max_entries) {
            return Err(err("max_cache_entries", "must be between 1 and 1000000"));
        }
        let unavailable = match self.unavailable_status {
            None | Some(401) => UNAVAILABLE_401,
            Some(503) => UNAVAILABLE_503,
            Some(_) => return Err(err("unavailable_status", "must be 401 or 503")),
        };
        let opaque_only = match self.tokens.as_deref() {
            None | Some("all") => false,
            Some("opaque") => true,
            Some(other) => {
                return Err(err(
                    "tokens",
                    format!("{other:?}: give \"all\" or \"opaque\""),
                ))
            }
        };
        Ok(IntrospectionConfig {
            cluster: self.cluster,
            authority,
            path,
            client_id: self.client_id,
            client_secret,
            timeout_ms,
            cache_ms,
            negative_ms,
            max_entries,
            unavailable,
            opaque_only,
        })
    }
}
