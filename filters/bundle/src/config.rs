//! The plugin configuration: one JSON object with a section per stage, each exactly that
//! filter's own configuration, each optional, nothing else.
//!
//! ```json
//! {
//!   "jwt_auth":         { "providers": { ... }, "rules": [ ... ] },
//!   "tenant_cache_key": { "stage": "request", "sources": [ ... ] },
//!   "transform":        { "rules": [ ... ] },
//!   "ratelimit":        { "cluster": "ratelimit", "domain": "edge", "rules": [ ... ] },
//!   "aggregate":        { "endpoints": { ... } }
//! }
//! ```
//!
//! Each section goes to its filter's own parser as written, so its errors are that filter's,
//! with the section's name in front of the field path (`jwt_auth.providers.idp.issuer`).

use filter_core::{parse_json_config, ConfigError};
use jwt_auth::config::FilterConfig;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use tenant_cache_key::TenantPolicy;
use transform::Transformer;

/// The stage sections in the order they run on a request.
pub const STAGES: [&str; 5] = [
    "jwt_auth",
    "tenant_cache_key",
    "transform",
    "ratelimit",
    "aggregate",
];

/// The configuration as written: each section kept as raw JSON for its filter's parser.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    jwt_auth: Option<Box<RawValue>>,
    #[serde(default)]
    tenant_cache_key: Option<Box<RawValue>>,
    #[serde(default)]
    transform: Option<Box<RawValue>>,
    #[serde(default)]
    ratelimit: Option<Box<RawValue>>,
    #[serde(default)]
    aggregate: Option<Box<RawValue>>,
}

/// The validated configuration: each configured stage compiled by its own filter.
#[derive(Debug)]
pub struct BundleConfig {
    pub jwt_auth: Option<Arc<FilterConfig>>,
    pub tenant: Option<TenantPolicy>,
    pub transform: Option<Transformer>,
    /// Leased global limits, decided last (on the headers the other stages left).
    pub ratelimit: Option<ratelimit::Config>,
    /// Aggregation, after every other stage admitted the request.
    pub aggregate: Option<aggregate::Config>,
}

fn section<T>(
    name: &str,
    raw: Option<Box<RawValue>>,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    raw.map(|r| parse(r.get().as_bytes()).map_err(|e| e.within(name)))
        .transpose()
}

impl BundleConfig {
    /// Parses and validates a JSON plugin configuration. Errors name the field and the reason.
    pub fn parse(bytes: &[u8]) -> Result<BundleConfig, ConfigError> {
        let raw: RawConfig = parse_json_config(bytes)?;
        let config = BundleConfig {
            jwt_auth: section(STAGES[0], raw.jwt_auth, FilterConfig::parse)?.map(Arc::new),
            tenant: section(STAGES[1], raw.tenant_cache_key, TenantPolicy::new)?,
            transform: section(STAGES[2], raw.transform, Transformer::new)?,
            ratelimit: section(STAGES[3], raw.ratelimit, ratelimit::Config::parse)?,
            aggregate: section(STAGES[4], raw.aggregate, aggregate::Config::parse)?,
        };
        let none = config.jwt_auth.is_none() && config.tenant.is_none();
        let none = none && config.transform.is_none() && config.ratelimit.is_none();
        if none && config.aggregate.is_none() {
            return Err(ConfigError::new(
                "",
                format!(
                    "no stage is configured: give at least one of the sections {}",
                    STAGES.join(", ")
                ),
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<BundleConfig, ConfigError> {
        BundleConfig::parse(v.to_string().as_bytes())
    }

    fn jwt() -> serde_json::Value {
        json!({
            "providers": { "idp": {
                "issuer": "https://idp",
                "local_jwks": { "inline": jwt_auth::testing::jwks(false).to_string() },
            }},
            "rules": [{ "match": { "path_prefix": "/" }, "requires": { "provider_name": "idp" } }],
        })
    }

    #[test]
    fn every_section_is_optional_but_one_is_needed() {
        let all = parse(json!({
            "jwt_auth": jwt(),
            "tenant_cache_key": { "stage": "request", "sources": [{ "default": { "tenant": "t" } }] },
            "transform": { "rules": [] },
        }))
        .unwrap();
        assert!(all.jwt_auth.is_some() && all.tenant.is_some() && all.transform.is_some());
        let only_transform = parse(json!({ "transform": { "rules": [] } })).unwrap();
        assert!(only_transform.jwt_auth.is_none() && only_transform.tenant.is_none());
        let response_only = parse(json!({ "tenant_cache_key": { "stage": "response" } })).unwrap();
        assert!(response_only.tenant.is_some());
        let err = parse(json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: no stage is configured: give at least one of the sections \
             jwt_auth, tenant_cache_key, transform, ratelimit, aggregate"
        );
        // `null` is the same as leaving the section out.
        assert!(parse(json!({ "jwt_auth": null, "transform": {"rules": []} })).is_ok());
    }

    #[test]
    fn unknown_sections_are_refused_by_name() {
        let err = parse(json!({ "transform": { "rules": [] }, "jwt": jwt() })).unwrap_err();
        assert_eq!(err.field, "jwt");
        assert!(
            err.reason.starts_with(
                "unknown field `jwt`, expected one of `jwt_auth`, `tenant_cache_key`, `transform`"
            ),
            "{}",
            err.reason
        );
    }

    #[test]
    fn a_section_fails_with_its_filters_own_error_under_its_name() {
        let mut bad_jwt = jwt();
        bad_jwt["providers"]["idp"]["remote_jwks"] =
            json!({"cluster": "c", "uri": "http://i/j", "timeout": "soon"});
        bad_jwt["providers"]["idp"]
            .as_object_mut()
            .unwrap()
            .remove("local_jwks");
        let err = parse(json!({ "jwt_auth": bad_jwt })).unwrap_err();
        assert_eq!(err.field, "jwt_auth.providers.idp.remote_jwks.timeout");

        let err = parse(json!({ "tenant_cache_key": { "stage": "request" } })).unwrap_err();
        assert_eq!(err.field, "tenant_cache_key.sources");
        assert_eq!(
            err.reason,
            TenantPolicy::new(br#"{"stage":"request"}"#)
                .unwrap_err()
                .reason,
            "the filter's own words"
        );

        let err = parse(json!({ "transform": { "rules": [{ "match": { "path_regex": "(" } }] } }))
            .unwrap_err();
        assert_eq!(err.field, "transform.rules[0].match.path_regex");

        let err = parse(json!({ "transform": "rules" })).unwrap_err();
        assert_eq!(err.field, "transform");
    }

    #[test]
    fn not_json_is_refused() {
        assert!(BundleConfig::parse(b"{not json").is_err());
        assert!(BundleConfig::parse(b"  ")
            .unwrap_err()
            .reason
            .contains("empty"));
    }
}
