//! `transform`: declarative, stateless request/response rewrites for Envoy (proxy-wasm).
//!
//! Layout (no module cycles: the configuration types depend on nothing else here): [`config`] is the configuration as
//! written; [`template`] (value templates), [`header_ops`] and [`query_ops`] compile and plan
//! header and query edits; [`json_path`] parses body paths, [`body_ops`] compiles the body
//! operations into the field trie that the single-pass JSON rewriter [`json_rewrite`] walks;
//! [`Transformer`] ([`transformer`]) compiles the whole configuration and makes every per-phase
//! decision; [`body_flow`] decides each body callback (buffer, rewrite, pass, or refuse a
//! response body that cannot be rewritten, holding the response headers or not:
//! `response_headers_mode`). None of these talk to the host. [`host`] keeps one request's state
//! across phases, the counters and the body host calls over any [`filter_core::Host`];
//! [`plugin`] is the plugin ([`filter_core::Plugin`]) that reads headers with one host call and
//! writes the planned edits. Everything, glue included, is tested natively against
//! `filter_core::testing::FakeHost`. On wasm32 with feature `plugin` (on by default), `filter`
//! is the one-line proxy-wasm entry point; bundles turn `plugin` off and use [`host`].

#[doc(hidden)]
pub mod bench_fixture;
pub mod body_flow;
pub mod body_ops;
pub mod config;
mod field_trie;
pub mod header_ops;
pub mod host;
pub mod json_path;
pub mod json_rewrite;
pub mod metrics;
pub mod plugin;
pub mod query_ops;
pub mod template;
pub mod transformer;

#[cfg(all(target_arch = "wasm32", feature = "plugin"))]
mod filter;

#[cfg(test)]
mod glue_tests;
#[cfg(test)]
mod json_rewrite_tests;

pub use body_flow::{BodyPolicy, BodyStart, BodyState, BodyStep};
pub use body_ops::BodyOps;
pub use config::{Config, OnUnprocessable, ResponseHeadersMode};
pub use filter_core::HeaderEdit;
pub use host::{Direction, ResponseNeeds, TransformMetrics, TransformRequest};
pub use json_rewrite::{BodyOutcome, InvalidJson};
pub use plugin::{TransformHttp, TransformPlugin};
pub use template::Captured;
pub use transformer::{BodyPlan, RequestEdits, ResponseEdits, RuleRef, SkipReason, Transformer};
