//! The service end to end, in process: `run(...)` on port 0, real gRPC and HTTP clients, a
//! real Redis where the scenario needs one. Waits poll with a deadline, never sleep blindly.
//!
//! One test binary, one module per concern; the in-process service fixture and the request
//! helpers are in `support`.
// Test crate: helpers outside #[test] fns may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod limits;
mod redis_store;
mod revocations;
mod rlqs;
mod support;

/// What every module of this binary uses.
mod prelude {
    pub use crate::support::*;
    pub use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    pub use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    pub use ratelimit_service::proto::revocation::revocation_service_client::RevocationServiceClient;
    pub use ratelimit_service::proto::revocation::{
        ListRevocationsRequest, ListRevocationsResponse, RevokeRequest,
    };
    pub use ratelimit_service::proto::rls::rate_limit_response::Code;
    pub use ratelimit_service::proto::rls::rate_limit_service_client::RateLimitServiceClient;
    pub use ratelimit_service::proto::rls::{RateLimitRequest, RateLimitResponse};
    pub use ratelimit_service::{RevocationAccess, Settings, Spawned, StoreSettings};
    pub use std::net::SocketAddr;
    pub use std::path::Path;
    pub use std::sync::atomic::{AtomicU64, Ordering};
    pub use std::sync::Arc;
    pub use std::time::{Duration, Instant};
    pub use test_harness::redis as redis_fixture;
    pub use test_harness::wait::eventually;
    pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
    pub use tonic::transport::Channel;
}
