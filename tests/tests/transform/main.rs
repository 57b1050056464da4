//! The transform filter (dist/transform.wasm) in a real Envoy in front of a scripted upstream.
//!
//! One test binary, one module per concern; the Envoy set-ups, the strip rule and the helpers
//! several modules use are in `support`.

mod rules;
mod stream;
mod strip;
mod support;

/// What every module of this binary uses.
mod prelude {
    pub use bytes::Bytes;
    pub use gateway_tests::chain;
    pub use gateway_tests::envoy::{client, custom, single_upstream, Envoy};
    pub use gateway_tests::tools;
    pub use gateway_tests::upstream::{Reply, Upstream};
    pub use serde_json::{json, Value};
    pub use std::io::Write;
    pub use std::time::Duration;
}
