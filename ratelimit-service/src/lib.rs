//! Envoy rate limit service (`envoy.service.ratelimit.v3.RateLimitService`) with atomic
//! Redis buckets, configured with envoyproxy/ratelimit's YAML.
//!
//! Layout, from the wire inwards:
//!
//! * [`server`] — `run(listeners, settings, shutdown)`: the gRPC edge (protobuf <-> limiter
//!   types, errors -> `tonic::Status`) for RateLimitService and the QuotaLease API (leased
//!   quotas), grpc.health.v1, the HTTP port (`/healthz`, `/ready`,
//!   `/metrics`, operator `/revocations` behind a bearer token; gRPC `Revoke` behind the same
//!   token) and config hot reload.
//! * [`limiter`] — the decision in plain code: match descriptors, build bucket keys, consult the
//!   [`local_cache`] of empty buckets, call the store once, assemble statuses and headers; and
//!   the same for leases (grant, give back) on the same buckets.
//! * [`config`] — YAML parsing and validation into a typed descriptor tree; [`keys`] — the one
//!   place storage keys are built.
//! * [`storage`] — the `Store` trait with an in-memory and a Redis implementation (Lua scripts
//!   `storage/redis/rate_limit.lua` and `lease.lua`); [`bucket`] — the bucket math both follow.
//! * [`revocation`] — token revocations for the jwt_auth filter (`edgegate.revocation.v1`):
//!   validation, versioned listing, an in-memory and a Redis store (two Lua scripts).
//! * [`metrics`] — Prometheus counters and histograms; [`proto`] — generated protobuf types.

pub mod bucket;
pub mod config;
pub mod keys;
pub mod limiter;
pub mod local_cache;
pub mod metrics;
pub mod proto;
pub mod revocation;
pub mod server;
pub mod storage;

pub use server::{
    run, validate_token, Listeners, RevocationAccess, ServerError, Settings, Spawned,
    StoreSettings, TokenError,
};
