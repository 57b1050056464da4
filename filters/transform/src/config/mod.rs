//! The plugin configuration as written (serde types, unknown fields refused everywhere).
//! [`crate::Transformer::new`] validates it and compiles it into typed operations.
//!
//! This module is a leaf: it holds the types as written and nothing of the compiled operations,
//! which depend on it (never the other way round).

mod operations;
mod ordered_map;

pub use operations::{BodyOpsConfig, HeaderOpsConfig, OnUnprocessable, QueryOpsConfig};
pub use ordered_map::OrderedMap;

use filter_core::route::UniqueMap;
use filter_core::RequestMatch;
use serde::Deserialize;

/// Default for `max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Upper bound for `max_body_bytes`: bodies are buffered in the VM's memory.
pub const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The whole plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Largest body (request or response) the filter buffers to rewrite; larger ones pass
    /// through untouched.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// `hold` (default): response headers wait while a response body rule checks the body,
    /// which needs the Wasm filter's `allow_on_headers_stop_iteration: true`. `stream`: they
    /// never wait (hosts that cannot set that flag, e.g. Istio's WasmPlugin); see
    /// [`crate::body_flow`].
    #[serde(default)]
    pub response_headers_mode: ResponseHeadersMode,
    /// Tried in order; the first whose `match` holds applies.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Applies when no rule matches (with `transform_rules`: on routes that name none).
    #[serde(default)]
    pub default: Option<ActionsConfig>,
    /// Named rules, chosen by the route Envoy matched (its `edgegate.transform` metadata, or
    /// its name through `routes`); `rules` (the deprecated matchers) are refused with them.
    #[serde(default)]
    pub transform_rules: Option<UniqueMap<ActionsConfig>>,
    /// Route name -> rule name (or `none`), for routes that carry no metadata.
    #[serde(default)]
    pub routes: UniqueMap<String>,
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// For logs and documentation only.
    #[serde(default)]
    pub name: Option<String>,
    /// Which requests the rule applies to; absent matches every request.
    #[serde(default, rename = "match")]
    pub matches: Option<RequestMatch>,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub response: ResponseConfig,
}

/// The `default` rule: actions without a match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub response: ResponseConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    #[serde(default)]
    pub headers: HeaderOpsConfig,
    #[serde(default)]
    pub query: QueryOpsConfig,
    #[serde(default)]
    pub body: BodyOpsConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    #[serde(default)]
    pub headers: HeaderOpsConfig,
    #[serde(default)]
    pub body: BodyOpsConfig,
}

/// Whether the filter may hold response headers while it checks a body that a response body
/// rule must rewrite (top-level `response_headers_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseHeadersMode {
    /// Hold them: a refused response becomes a 502 whatever its body turns out to be. Needs the
    /// Wasm filter's `allow_on_headers_stop_iteration: true`; without it such responses stall.
    #[default]
    Hold,
    /// Never hold them (for hosts that cannot set that flag, e.g. Istio's WasmPlugin): a body
    /// found unprocessable after the headers left is replaced by the JSON error body, under the
    /// upstream's status.
    Stream,
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_core::parse_json_config;

    #[test]
    fn maps_keep_their_order_and_refuse_duplicates() {
        let m: OrderedMap<u32> = serde_json::from_str(r#"{"z":1,"a":2,"m":3}"#).unwrap();
        assert_eq!(
            m.0,
            [
                ("z".to_string(), 1),
                ("a".to_string(), 2),
                ("m".to_string(), 3)
            ]
        );
        let err = parse_json_config::<Config>(
            br#"{"rules":[{"request":{"headers":{"set":{"a":"1","a":"2"}}}}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("duplicate key `a`"), "{err}");
        assert!(
            err.field.starts_with("rules[0].request.headers.set"),
            "{err}"
        );
    }
}
