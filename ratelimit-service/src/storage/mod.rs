//! Bucket storage behind one small trait: an in-memory store and a Redis store, both atomic
//! over all buckets of one request (all pass and all are charged, or nothing is charged).

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

/// A storage failure. `transient` failures (timeouts, lost connections) may succeed on retry
/// and become gRPC `UNAVAILABLE`; the others point at a bug or a misconfiguration.
#[derive(Debug, thiserror::Error)]
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
