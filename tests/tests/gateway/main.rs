//! The reference gateway (`envoy/gateway.yaml`) end to end: real Envoy with the jwt_auth and
//! transform wasm filters, a JWKS endpoint, real Redis and the real ratelimit-service, and
//! in-process upstreams for orders v1/v2, users and products. Every failure path the design
//! documents name gets its status here, through the shipped config and not a test copy of it;
//! the only values a test changes are the two timeouts (placeholders) so the suite stays fast.
//!
//! One test binary, one module per concern; the fixture (`gateway_tests::gateway`) and helpers
//! live in `tests/src`.

mod audit;
mod auth;
mod cache;
mod dashboard;
mod edge;
mod headers;
mod limits;
mod mtls;
mod policies;
mod protocols;
mod resilience;
mod routing;
mod transcoding;

/// What every module of this binary uses.
mod prelude {
    pub use futures_util::StreamExt;
    pub use gateway_tests::gateway::*;
    pub use gateway_tests::upstream::{Recorded, Reply, Upstream};
    pub use gateway_tests::wait;
    pub use jwt_auth::testing::{claims, sign};
    pub use serde_json::{json, Value};
    pub use std::collections::HashSet;
    pub use std::net::SocketAddr;
    pub use std::sync::atomic::{AtomicBool, Ordering};
    pub use std::sync::{Arc, Mutex};
    pub use std::time::{Duration, Instant};
    pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
    pub use tokio::net::{TcpListener, TcpStream};
}
