//! `transform`: declarative, stateless request/response rewrites for Envoy (proxy-wasm).
//!
//! Layout: [`config`] is the configuration as written; [`Transformer`] ([`transformer`]) compiles
//! it and makes every per-phase decision; the operations live in [`header_ops`], [`query_ops`],
//! [`template`] (value templates) and [`body_ops`] (JSON paths in [`json_path`]), whose compiled
//! trie drives the single-pass JSON rewriter [`json_rewrite`]; [`body_flow`] decides each body
//! callback (buffer, rewrite, pass, or refuse a response body that cannot be rewritten, holding
//! the response headers or not: `response_headers_mode`). None of these use proxy-wasm and all
//! are tested natively. On wasm32, `host` keeps one request's state across phases, the
//! counters and the body host calls, and `filter` (feature `plugin`, on by default) is the thin
//! plugin glue that reads headers with one host call and writes the planned edits; bundles turn
//! `plugin` off and use `host`.

#[doc(hidden)]
pub mod bench_fixture;
pub mod body_flow;
pub mod body_ops;
pub mod config;
pub mod header_ops;
pub mod json_path;
pub mod json_rewrite;
pub mod query_ops;
pub mod template;
pub mod transformer;

#[cfg(all(target_arch = "wasm32", feature = "plugin"))]
mod filter;
#[cfg(target_arch = "wasm32")]
pub mod host;

pub use body_flow::{
    BodyPolicy, BodyStart, BodyState, BodyStep, OnUnprocessable, ResponseHeadersMode,
};
pub use body_ops::BodyOps;
pub use config::Config;
pub use header_ops::HeaderEdit;
pub use json_rewrite::{BodyOutcome, InvalidJson};
pub use template::Captured;
pub use transformer::{BodyPlan, RequestEdits, ResponseEdits, RuleRef, SkipReason, Transformer};
