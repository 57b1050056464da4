//! The plugin configuration as written (serde types, unknown fields refused everywhere).
//! [`crate::Transformer::new`] validates it and compiles it into typed operations.

use crate::body_flow::ResponseHeadersMode;
use crate::body_ops::BodyOpsConfig;
use crate::header_ops::HeaderOpsConfig;
use crate::query_ops::QueryOpsConfig;
use filter_core::RequestMatch;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;

/// Default for `max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Upper bound for `max_body_bytes`: bodies are buffered in the VM's memory.
pub const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The whole plugin configuration.
#[derive(Debug, Clone, serde::Deserialize)]
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
    /// Applies when no rule matches.
    #[serde(default)]
    pub default: Option<ActionsConfig>,
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

#[derive(Debug, Clone, serde::Deserialize)]
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
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub response: ResponseConfig,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    #[serde(default)]
    pub headers: HeaderOpsConfig,
    #[serde(default)]
    pub query: QueryOpsConfig,
    #[serde(default)]
    pub body: BodyOpsConfig,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    #[serde(default)]
    pub headers: HeaderOpsConfig,
    #[serde(default)]
    pub body: BodyOpsConfig,
}

/// A JSON object whose members keep the order they were written in (operations apply in that
/// order). A key given twice is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| k == &key) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    let value = map.next_value::<V>()?;
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
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
