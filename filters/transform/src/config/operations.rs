//! The operation sections of a rule as written: `headers`, `query` and `body`.

use super::OrderedMap;
use serde::Deserialize;

/// The `headers` object of a request or response section, as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOpsConfig {
    #[serde(default)]
    pub remove: Vec<String>,
    /// Old name -> new name.
    #[serde(default)]
    pub rename: OrderedMap<String>,
    #[serde(default)]
    pub set: OrderedMap<String>,
    #[serde(default)]
    pub add: OrderedMap<String>,
    #[serde(default)]
    pub append: OrderedMap<String>,
}

/// The `query` object of the request section, as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryOpsConfig {
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default)]
    pub set: OrderedMap<String>,
    #[serde(default)]
    pub add: OrderedMap<String>,
}

/// The `body` object of a request or response section, as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyOpsConfig {
    /// Fields to remove.
    #[serde(default)]
    pub strip: Vec<String>,
    /// Field path -> new name of the field in the same object.
    #[serde(default)]
    pub rename: OrderedMap<String>,
    /// Field path -> value, inserted only when the field is absent.
    #[serde(default)]
    pub add: OrderedMap<serde_json::Value>,
    /// Field path -> value, replacing the field or inserting it.
    #[serde(default)]
    pub set: OrderedMap<serde_json::Value>,
    /// Response bodies only: what happens to a body the operations cannot apply to (default
    /// `reject`: a 502; `pass`: forwarded untouched). See [`crate::body_flow`].
    #[serde(default)]
    pub on_unprocessable: Option<OnUnprocessable>,
}

impl BodyOpsConfig {
    /// True when there are no operations (`on_unprocessable` is not one).
    pub fn is_empty(&self) -> bool {
        self.strip.is_empty()
            && self.rename.is_empty()
            && self.add.is_empty()
            && self.set.is_empty()
    }
}

/// What a rule does with a response body it cannot rewrite (`response.body.on_unprocessable`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnprocessable {
    /// Refuse the response (fail closed). The default.
    #[default]
    Reject,
    /// Forward the body untouched (an explicit opt-in per rule).
    Pass,
}
