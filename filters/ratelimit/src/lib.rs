//! `ratelimit`: global rate limits decided in the gateway, with no call on the request path
//! and never more admitted than the limit.
//!
//! A request is admitted only against a token its Envoy already holds. Tokens are leased in
//! batches from ratelimit-service's buckets (`edgegate.ratelimit.v1.QuotaLease`, the same Redis
//! buckets `ShouldRateLimit` charges), so every admitted request spent a token that left the
//! bucket: over any interval all gateways together admit at most what the bucket released in
//! that interval plus one lease lifetime. Tokens held by one gateway that another could have
//! used are the price (under-admission), bounded by the lease size per pool.
//!
//! Layout: [`config`] (the plugin configuration), [`descriptors`] (Envoy's `rate_limits`
//! actions, the pool key), [`pool`] (a pool on shared data and its pure decisions), [`host`]
//! (the limiter over any `filter_core::Host`: shared data, lease calls, waiting requests,
//! replies), [`plugin`] (the plugin and one request), [`metrics`]. `filter` (wasm32) is the
//! module's entry point.

pub mod config;
pub mod descriptors;
pub mod host;
pub mod metrics;
pub mod plugin;
pub mod pool;
pub mod slots;

/// The lease API (`proto/edgegate/ratelimit/v1/lease.proto`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/edgegate.ratelimit.v1.rs"));
}

#[cfg(all(target_arch = "wasm32", feature = "plugin"))]
mod filter;
#[cfg(test)]
mod glue_tests;

pub use config::Config;
pub use plugin::{RateLimitPlugin, RateLimitRequest};
