//! The security review of the reference gateway, as attacks: each test is one finding of the
//! review (issue "Security review of the running gateway"), run against the shipped
//! `envoy/gateway.yaml` with real Envoy, the real filters, Redis and the rate-limit service.
//! Tests that cover "every route" take the routes from the config itself
//! ([`GatewayConfig`](gateway_tests::gateway_config::GatewayConfig)), so a route added later is
//! attacked too.
//!
//! One test binary, one module per concern; helpers several modules use are in `support`, the
//! fixture (`gateway_tests::gateway`) in `tests/src`.

mod authz;
mod availability;
mod bodies;
mod cache;
mod owned_headers;
mod support;

/// What every module of this binary uses.
mod prelude {
    pub use bytes::Bytes;
    pub use gateway_tests::envoy::custom;
    pub use gateway_tests::gateway::*;
    pub use gateway_tests::gateway_config::{GatewayConfig, Route};
    pub use gateway_tests::upstream::{Recorded, Reply};
    pub use serde_json::{json, Value};
    pub use std::collections::BTreeSet;
    pub use std::sync::{Arc, Mutex};
    pub use std::time::Duration;
    pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
    pub use tokio::net::TcpStream;
}
