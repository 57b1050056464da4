//! Tenant isolation end to end: the shipped `envoy/tenant-cache.yaml` (tenant_cache_key.wasm as
//! a request-stage filter before Envoy's rate limit and cache filters, and as a response-stage
//! upstream filter on the cluster) in a real Envoy 1.40, with the real `dist/ratelimit-service`
//! on a real Redis, in front of a scripted upstream that echoes the tenant it was sent.
//!
//! The cache stores entries asynchronously (FileSystemHttpCache writes files on a thread pool):
//! a test that expects a hit first waits for the cache's entry-count gauge, never on a sleep.
//!
//! One test binary, one module per concern; the stack, the upstream and the helpers several
//! modules use are in `support`.

mod cache;
mod limits;
mod resolution;
mod rotation;
mod support;

/// What every module of this binary uses.
mod prelude {
    pub use gateway_tests::chain;
    pub use gateway_tests::envoy::{client, custom, single_upstream, Envoy, EnvoyBuilder};
    pub use gateway_tests::ratelimit::RateLimitService;
    pub use gateway_tests::redis::RedisServer;
    pub use gateway_tests::tools;
    pub use gateway_tests::upstream::{read_head, Recorded, Reply, Upstream, WebSocketEcho};
    pub use gateway_tests::wait;
    pub use reqwest::header::HeaderMap;
    pub use serde_json::{json, Value};
    pub use std::time::Duration;
    pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
    pub use tokio::net::TcpStream;
}
