//! The revocation store semantics, run against every store: in memory, a real Redis, and a
//! Redis Cluster. Scenarios that share a store (the cluster is shared by all its scenarios)
//! use an issuer of their own and look only at their own entries; the ones that need a store
//! to themselves (the entry bound, a reset) run on memory and standalone Redis.
//!
//! One test binary: the store semantics (`scenarios` on every store, `isolated` on stores of
//! their own; helpers in `support`), and the revocation API's access control (`access`).

// Test crate: helpers outside #[test] fns may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod isolated;
mod scenarios;
mod support;

/// What every module of this binary uses.
mod prelude {
    pub use crate::support::*;
    pub use ratelimit_service::revocation::memory::MemoryRevocations;
    pub use ratelimit_service::revocation::redis::RedisRevocations;
    pub use ratelimit_service::revocation::{RevocationError, RevocationStore};
    pub use ratelimit_service::storage::memory::SystemClock;
    pub use std::collections::HashSet;
    pub use std::sync::Arc;
    pub use std::time::Duration;
    pub use test_harness::redis as redis_fixture;
    pub use test_harness::wait::eventually;
}
