//! In-memory store: the bucket math of [`crate::bucket`] over a mutex-guarded map, for tests
//! and single-instance deployments (`--store memory`). Time comes from an injectable clock.

use super::{BucketOutcome, BucketRequest, LeaseBucketOutcome, LeaseOutcome, Store, StoreError};
use crate::bucket::{self, evaluate, BucketState, LeaseInput};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_us(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(now_us: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(now_us)))
    }

    pub fn advance_us(&self, us: u64) {
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Entry {
    state: BucketState,
    expires_us: u64,
}

/// Buckets in process memory; expired entries are swept every `SWEEP_EVERY` calls so idle keys
/// do not accumulate.
pub struct MemoryStore {
    clock: Box<dyn Clock>,
    buckets: Mutex<HashMap<String, Entry>>,
    calls: AtomicU64,
}

const SWEEP_EVERY: u64 = 4096;

impl MemoryStore {
    pub fn new(clock: impl Clock) -> Self {
        MemoryStore {
            clock: Box::new(clock),
            buckets: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map, locked, with expired entries swept every `SWEEP_EVERY` calls.
    fn lock(&self, now: u64) -> Result<MutexGuard<'_, HashMap<String, Entry>>, StoreError> {
        let mut map = self
            .buckets
            .lock()
            .map_err(|_| StoreError::permanent("in-memory store lock poisoned"))?;
        if self
            .calls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            map.retain(|_, entry| entry.expires_us > now);
        }
        Ok(map)
    }

    fn apply_now(&self, buckets: &[BucketRequest]) -> Result<Vec<BucketOutcome>, StoreError> {
        let now = self.clock.now_us();
        let mut map = self.lock(now)?;
        let all_pass = buckets.iter().all(|b| {
            !b.enforce || evaluate(&b.spec, state_of(&map, &b.key, now), now, b.hits, false).allowed
        });
        let mut out = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            let eval = evaluate(
                &bucket.spec,
                state_of(&map, &bucket.key, now),
                now,
                bucket.hits,
                all_pass,
            );
            if let Some(state) = eval.new_state {
                store(&mut map, &bucket.key, state, now, eval.ttl_ms);
            }
            out.push(BucketOutcome {
                allowed: eval.allowed,
                remaining: eval.remaining,
                reset_ms: eval.reset_ms,
                retry_ms: eval.retry_ms,
                empty_ms: eval.empty_ms,
            });
        }
        Ok(out)
    }

    fn lease_now(&self, buckets: &[BucketRequest], want: u64) -> Result<LeaseOutcome, StoreError> {
        let now = self.clock.now_us();
        let mut map = self.lock(now)?;
        let inputs: Vec<LeaseInput> = buckets
            .iter()
            .map(|b| LeaseInput {
                spec: b.spec,
                state: state_of(&map, &b.key, now),
                weight: b.hits,
                enforce: b.enforce,
            })
            .collect();
        let (granted, effects) = bucket::lease(&inputs, now, want);
        let mut out = Vec::with_capacity(buckets.len());
        for (b, effect) in buckets.iter().zip(effects) {
            if let Some(state) = effect.eval.new_state {
                store(&mut map, &b.key, state, now, effect.eval.ttl_ms);
            }
            out.push(LeaseBucketOutcome {
                remaining: effect.eval.remaining,
                reset_ms: effect.eval.reset_ms,
                next_token_ms: effect.next_token_ms,
                empty_ms: effect.eval.empty_ms,
            });
        }
        Ok(LeaseOutcome {
            granted,
            buckets: out,
        })
    }

    fn give_back_now(
        &self,
        buckets: &[BucketRequest],
        requests: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let now = self.clock.now_us();
        let mut map = self.lock(now)?;
        let mut out = Vec::with_capacity(buckets.len());
        for b in buckets {
            let back =
                bucket::give_back(&b.spec, state_of(&map, &b.key, now), now, requests, b.hits);
            if let Some(state) = back.new_state {
                match back.ttl_ms {
                    Some(ttl_ms) => store(&mut map, &b.key, state, now, ttl_ms),
                    None => {
                        if let Some(entry) = map.get_mut(&b.key) {
                            entry.state = state;
                        }
                    }
                }
            }
            out.push(back.restored);
        }
        Ok(out)
    }
}

/// The live state of `key`, if any.
fn state_of(map: &HashMap<String, Entry>, key: &str, now: u64) -> Option<BucketState> {
    map.get(key)
        .filter(|entry| entry.expires_us > now)
        .map(|entry| entry.state)
}

fn store(map: &mut HashMap<String, Entry>, key: &str, state: BucketState, now: u64, ttl_ms: u64) {
    let entry = Entry {
        state,
        expires_us: now.saturating_add(ttl_ms.saturating_mul(1000)),
    };
    map.insert(key.to_owned(), entry);
}

impl Store for MemoryStore {
    async fn apply(&self, buckets: &[BucketRequest]) -> Result<Vec<BucketOutcome>, StoreError> {
        self.apply_now(buckets)
    }

    async fn lease(
        &self,
        buckets: &[BucketRequest],
        want: u64,
    ) -> Result<LeaseOutcome, StoreError> {
        self.lease_now(buckets, want)
    }

    async fn give_back(
        &self,
        buckets: &[BucketRequest],
        requests: u64,
    ) -> Result<Vec<u64>, StoreError> {
        self.give_back_now(buckets, requests)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
