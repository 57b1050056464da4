//! The decision: match descriptors against the config, build buckets, ask the store (or the
//! local over-limit cache), and assemble per-descriptor statuses, headers and observations.
//! Plain code over domain types; the gRPC edge converts to and from protobuf.

use crate::config::{Config, Limit, Unit};
use crate::local_cache::OverLimitCache;
use crate::storage::{BucketOutcome, BucketRequest, Store, StoreError};
use plan::{plan, validate, Applied, AppliedKind, Plan};
use std::time::{Duration, Instant};

pub use lease::{
    LeaseDecision, LeaseMode, LeaseRequest, LimitState, ReturnDecision, ReturnRequest,
};

/// Requests above these bounds are rejected as invalid, so memory per call stays bounded.
pub const MAX_DESCRIPTORS: usize = 256;
pub const MAX_ENTRIES: usize = 1024;
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
}

/// A limit Envoy sent with the descriptor (route-level `limit` override).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOverride {
    pub requests_per_unit: u32,
    pub unit: Unit,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub entries: Vec<Entry>,
    pub limit_override: Option<LimitOverride>,
    /// Per-descriptor hits; `Some(0)` only checks.
    pub hits_addend: Option<u64>,
}

impl Descriptor {
    /// A descriptor with these `(key, value)` entries and no per-descriptor overrides.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            entries: pairs
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub domain: String,
    pub descriptors: Vec<Descriptor>,
    /// Request-level hits (the wire's 0 already turned into 1 by the edge).
    pub hits_addend: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok,
    OverLimit,
}

/// The limit reported back to Envoy for a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentLimit {
    pub name: Option<String>,
    pub requests_per_unit: u32,
    pub unit: Unit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorStatus {
    pub code: Code,
    pub current_limit: Option<CurrentLimit>,
    pub limit_remaining: u32,
    pub duration_until_reset: Option<Duration>,
}

impl DescriptorStatus {
    fn unmatched() -> Self {
        DescriptorStatus {
            code: Code::Ok,
            current_limit: None,
            limit_remaining: 0,
            duration_until_reset: None,
        }
    }
}

/// What happened to one limit, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// `Limit::id` of a configured limit; `None` for an override sent by Envoy.
    pub limit_id: Option<usize>,
    /// Label for limits without a fixed one: overrides, `detailed_metric` and `value_to_metric`
    /// names.
    pub label: Option<String>,
    pub hits: u64,
    pub over_limit: bool,
    pub near_limit: bool,
    pub shadow_over_limit: bool,
    pub cache_hit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub overall: Code,
    /// One per request descriptor, in order.
    pub statuses: Vec<DescriptorStatus>,
    pub response_headers: Vec<(&'static str, String)>,
    pub observations: Vec<Observation>,
    /// The store was called (false: answered from config or the local cache alone).
    pub store_called: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Options fixed at startup.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimiterOptions {
    /// Add `RateLimit-Limit`/`-Remaining`/`-Reset` response headers.
    pub ratelimit_headers: bool,
}

pub struct Limiter<S> {
    store: S,
    cache: OverLimitCache,
    options: LimiterOptions,
}

/// What we know about one bucket after the cache and the store.
#[derive(Clone, Copy)]
enum Known {
    Outcome(BucketOutcome),
    CachedEmpty(Duration),
    NotAsked,
}

impl<S: Store> Limiter<S> {
    pub fn new(store: S, local_cache_size: usize, options: LimiterOptions) -> Self {
        Limiter {
            store,
            cache: OverLimitCache::new(local_cache_size),
            options,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Forgets cached over-limit buckets (after a config change).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// Decides one request. `now` anchors the local over-limit cache.
    // Debug level: a span per request at the default `info` filter would cost more than the work.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(domain = %request.domain, descriptors = request.descriptors.len())
    )]
    pub async fn should_rate_limit(
        &self,
        config: &Config,
        request: &Request,
        now: Instant,
    ) -> Result<Decision, LimitError> {
        validate(&request.domain, &request.descriptors)?;
        let Some(domain) = config.domain(&request.domain) else {
            return Ok(Decision {
                overall: Code::Ok,
                statuses: vec![DescriptorStatus::unmatched(); request.descriptors.len()],
                response_headers: Vec::new(),
                observations: Vec::new(),
                store_called: false,
            });
        };

        // 1. Which limits apply to which descriptor, and their buckets.
        let Plan { applied, buckets } = plan(domain, &request.descriptors, request.hits_addend);
        // 2. The store's answer, or the local over-limit cache's.
        let (known, store_called) = self.consult(&applied, &buckets, now).await?;
        // 3. Statuses and observations.
        let mut statuses = vec![DescriptorStatus::unmatched(); request.descriptors.len()];
        let mut best: Vec<Option<Candidate>> = vec![None; request.descriptors.len()];
        let mut observations = Vec::with_capacity(applied.len());
        let mut retry_ms: Option<u64> = None;
        for a in &applied {
            let (observation, candidate) = assess(a, &known, request);
            if candidate.over {
                retry_ms = Some(retry_ms.unwrap_or(0).max(candidate.retry));
            }
            observations.push(observation);
            let slot = &mut best[a.descriptor];
            if slot.as_ref().is_none_or(|b| candidate.beats(b)) {
                *slot = Some(candidate);
            }
        }
        for (status, candidate) in statuses.iter_mut().zip(best) {
            if let Some(c) = candidate {
                *status = c.status;
            }
        }
        let overall = if retry_ms.is_some() {
            Code::OverLimit
        } else {
            Code::Ok
        };
        let response_headers = self.headers(retry_ms, &statuses);
        Ok(Decision {
            overall,
            statuses,
            response_headers,
            observations,
            store_called,
        })
    }

    /// Asks the store about every bucket, unless a zero limit or a bucket the local cache knows
    /// to be empty decides the request without it. Returns what is known per bucket and
    /// whether the store was called.
    async fn consult(
        &self,
        applied: &[Applied<'_>],
        buckets: &[BucketRequest],
        now: Instant,
    ) -> Result<(Vec<Known>, bool), StoreError> {
        let zero_blocks = applied
            .iter()
            .any(|a| matches!(a.kind, AppliedKind::Zero) && !a.limit.shadow_mode);
        let mut known: Vec<Known> = vec![Known::NotAsked; buckets.len()];
        let mut cache_blocks = false;
        if self.cache.is_enabled() {
            for (i, bucket) in buckets.iter().enumerate() {
                if bucket.enforce {
                    if let Some(left) = self.cache.empty_for(&bucket.key, now) {
                        known[i] = Known::CachedEmpty(left);
                        cache_blocks = true;
                    }
                }
            }
        }
        let store_called = !zero_blocks && !cache_blocks && !buckets.is_empty();
        if store_called {
            let outcomes = self.store.apply(buckets).await?;
            for (i, (bucket, outcome)) in buckets.iter().zip(outcomes).enumerate() {
                if bucket.enforce && outcome.empty_ms > 0 {
                    self.remember_empty(&bucket.key, now, outcome.empty_ms);
                }
                known[i] = Known::Outcome(outcome);
            }
        }
        Ok((known, store_called))
    }

    /// Caches "empty for `empty_ms`" for an enforced bucket (no-op with the cache off).
    fn remember_empty(&self, key: &str, now: Instant, empty_ms: u64) {
        if self.cache.is_enabled() {
            self.cache
                .insert(key, now + Duration::from_millis(empty_ms));
        }
    }

    /// `Retry-After` when over limit, and the `RateLimit-*` headers of the tightest limit.
    fn headers(
        &self,
        retry_ms: Option<u64>,
        statuses: &[DescriptorStatus],
    ) -> Vec<(&'static str, String)> {
        let mut response_headers = Vec::new();
        if let Some(ms) = retry_ms {
            response_headers.push(("retry-after", ms.div_ceil(1000).max(1).to_string()));
        }
        if self.options.ratelimit_headers {
            if let Some((limit, status)) = statuses
                .iter()
                .filter_map(|s| s.current_limit.as_ref().map(|l| (l, s)))
                .min_by_key(|(_, s)| s.limit_remaining)
            {
                let reset = status
                    .duration_until_reset
                    .map(|d| duration_ms_ceil(d).div_ceil(1000))
                    .unwrap_or(0);
                response_headers.push(("ratelimit-limit", limit.requests_per_unit.to_string()));
                response_headers.push(("ratelimit-remaining", status.limit_remaining.to_string()));
                response_headers.push(("ratelimit-reset", reset.to_string()));
            }
        }
        response_headers
    }
}

/// What one applied limit says: its metrics observation and its candidate status.
fn assess(a: &Applied<'_>, known: &[Known], request: &Request) -> (Observation, Candidate) {
    let limit = &a.limit;
    let descriptor = &request.descriptors[a.descriptor];
    let hits = descriptor.hits_addend.unwrap_or(request.hits_addend);
    let period_ms = limit.period_secs().saturating_mul(1000);
    let (over, remaining, reset_ms, retry, cache_hit) = match a.kind {
        AppliedKind::Unlimited => (false, u64::from(u32::MAX), 0, 0, false),
        AppliedKind::Zero => (true, 0, period_ms, period_ms, false),
        AppliedKind::Bucket(i) => match known[i] {
            Known::Outcome(o) => (!o.allowed, o.remaining, o.reset_ms, o.retry_ms, false),
            Known::CachedEmpty(left) => {
                let ms = duration_ms_ceil(left);
                (true, 0, ms, ms, true)
            }
            // Another bucket decided without the store: nothing measured here.
            Known::NotAsked => (false, 0, 0, 0, false),
        },
    };
    let enforced_over = over && !limit.shadow_mode;
    let capacity = limit.capacity();
    let near = !over
        && !limit.unlimited
        && capacity > 0
        && capacity.saturating_sub(remaining).saturating_mul(5) >= capacity.saturating_mul(4);
    let observation = Observation {
        limit_id: (limit.id != usize::MAX).then_some(limit.id),
        label: observation_label(limit, descriptor),
        hits,
        over_limit: enforced_over,
        near_limit: near,
        shadow_over_limit: over && limit.shadow_mode,
        cache_hit,
    };
    let candidate = Candidate {
        over: enforced_over,
        retry,
        status: DescriptorStatus {
            code: if enforced_over {
                Code::OverLimit
            } else {
                Code::Ok
            },
            current_limit: (!limit.unlimited).then(|| CurrentLimit {
                name: limit.name.clone(),
                requests_per_unit: limit.requests_per_unit,
                unit: limit.unit,
            }),
            limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            duration_until_reset: (!limit.unlimited).then(|| Duration::from_millis(reset_ms)),
        },
    };
    (observation, candidate)
}

#[derive(Clone)]
struct Candidate {
    over: bool,
    retry: u64,
    status: DescriptorStatus,
}

impl Candidate {
    /// The status reported for a descriptor with several limits: an over-limit one (the longest
    /// wait first), else the one with the fewest requests left.
    fn beats(&self, other: &Candidate) -> bool {
        match (self.over, other.over) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => self.retry > other.retry,
            (false, false) => match (&self.status.current_limit, &other.status.current_limit) {
                (Some(_), None) => true,
                (None, _) => false,
                (Some(_), Some(_)) => self.status.limit_remaining < other.status.limit_remaining,
            },
        }
    }
}

fn duration_ms_ceil(d: Duration) -> u64 {
    let ms = d.as_millis();
    let ms = if d.subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms + 1
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn observation_label(limit: &Limit, descriptor: &Descriptor) -> Option<String> {
    let entries = descriptor
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()));
    if limit.id != usize::MAX {
        // `detailed_metric`, `value_to_metric`: named by the request's values, as there.
        return limit.stats_name(entries);
    }
    // An override sent by Envoy: named by the request's own entries.
    let mut label = String::new();
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            label.push('.');
        }
        label.push_str(key);
        if !value.is_empty() {
            label.push('_');
            label.push_str(value);
        }
    }
    Some(label)
}

mod lease;
mod plan;

#[cfg(test)]
mod tests;
