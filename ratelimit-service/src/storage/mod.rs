//! Bucket storage behind one small trait: an in-memory store and a Redis store, both atomic
//! over all buckets of one request (all pass and all are charged, or nothing is charged), for
//! ShouldRateLimit (`apply`) and for leased quotas (`lease`, `give_back`).

pub mod memory;
pub mod redis;

use crate::bucket::{Algorithm, BucketSpec};
use std::future::Future;

/// One bucket to check (and charge, if every enforced bucket of the call passes).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRequest {
    pub key: String,
    pub spec: BucketSpec,
    /// Hits to charge; 0 only checks that one more request would fit.
    pub hits: u64,
    /// Shadow-mode buckets are charged when they pass but never block the others.
    pub enforce: bool,
}

/// What the store decided for one bucket. Durations are relative to the store's clock at the
/// time of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketOutcome {
    /// This bucket alone would admit the hits.
    pub allowed: bool,
    pub remaining: u64,
    pub reset_ms: u64,
    pub retry_ms: u64,
    /// The bucket cannot admit even one request for this long (rounded down); 0 if it can.
    pub empty_ms: u64,
}

/// One bucket after a lease call. Durations are relative to the store's clock at the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseBucketOutcome {
    /// Whole requests the bucket still admits after the grant.
    pub remaining: u64,
    /// Until the bucket is full again (token bucket) or its window ends.
    pub reset_ms: u64,
    /// Until the bucket could pay for one more request, rounded up; 0 if it can now.
    pub next_token_ms: u64,
    /// As [`BucketOutcome::empty_ms`]: rounded down, for the local over-limit cache.
    pub empty_ms: u64,
}

/// What a lease call did: the grant (charged to every enforced bucket) and each bucket after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOutcome {
    pub granted: u64,
    /// One per bucket, in call order.
    pub buckets: Vec<LeaseBucketOutcome>,
}

/// A storage failure. `transient` failures (timeouts, lost connections) may succeed on retry
/// and become gRPC `UNAVAILABLE`; the others point at a bug or a misconfiguration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limit store: {message}")]
pub struct StoreError {
    pub message: String,
    pub transient: bool,
}

impl StoreError {
    pub fn transient(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            transient: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            transient: false,
        }
    }
}

/// Where buckets live. `apply` returns one outcome per request, in order; keys are distinct.
pub trait Store: Send + Sync + 'static {
    fn apply(
        &self,
        buckets: &[BucketRequest],
    ) -> impl Future<Output = Result<Vec<BucketOutcome>, StoreError>> + Send;

    /// Takes up to `want` requests' worth of tokens from every bucket at once, all or nothing
    /// by the minimum (see [`crate::bucket::grant`]). Here a bucket's `hits` is its weight: the
    /// tokens one granted request costs it. Keys are distinct.
    fn lease(
        &self,
        buckets: &[BucketRequest],
        want: u64,
    ) -> impl Future<Output = Result<LeaseOutcome, StoreError>> + Send;

    /// Gives `requests` requests' worth of tokens (`hits` tokens each) back to every bucket
    /// (see [`crate::bucket::give_back`]); returns the whole requests each bucket took back.
    fn give_back(
        &self,
        buckets: &[BucketRequest],
        requests: u64,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;

    /// Cheap reachability check for readiness.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The store chosen at startup.
pub enum AnyStore {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

impl Store for AnyStore {
    async fn apply(&self, buckets: &[BucketRequest]) -> Result<Vec<BucketOutcome>, StoreError> {
        match self {
            AnyStore::Memory(store) => store.apply(buckets).await,
            AnyStore::Redis(store) => store.apply(buckets).await,
        }
    }

    async fn lease(
        &self,
        buckets: &[BucketRequest],
        want: u64,
    ) -> Result<LeaseOutcome, StoreError> {
        match self {
            AnyStore::Memory(store) => store.lease(buckets, want).await,
            AnyStore::Redis(store) => store.lease(buckets, want).await,
        }
    }

    async fn give_back(
        &self,
        buckets: &[BucketRequest],
        requests: u64,
    ) -> Result<Vec<u64>, StoreError> {
        match self {
            AnyStore::Memory(store) => store.give_back(buckets, requests).await,
            AnyStore::Redis(store) => store.give_back(buckets, requests).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.ping().await,
            AnyStore::Redis(store) => store.ping().await,
        }
    }
}

/// Code passed to the Lua script for an algorithm.
pub(crate) fn algorithm_code(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::TokenBucket => "t",
        Algorithm::FixedWindow => "f",
        Algorithm::SlidingWindow => "s",
    }
}
