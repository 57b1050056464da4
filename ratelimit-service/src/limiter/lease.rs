//! Leased quotas (`edgegate.ratelimit.v1.QuotaLease`): a gateway takes tokens in batches from
//! the very buckets ShouldRateLimit charges (same matching, same keys, see [`super::plan`]) and
//! admits requests against the tokens it holds.
//!
//! * No limit matched (unknown domain, unmatched descriptors, `unlimited: true`): UNLIMITED,
//!   nothing charged, trusted for the domain's smallest `lease_ttl`.
//! * Any matched limit in exact mode (or leased with a lease size of 1): EXACT, at most one
//!   token. Otherwise LEASED, at most the smallest lease size of the matched limits.
//! * The grant is the smallest number of whole requests every enforced bucket can pay, charged
//!   to all of them in one store call; 0 when a bucket is empty (a `requests_per_unit: 0` limit,
//!   or a bucket the local over-limit cache knows to be empty, decides that without the store).

use super::plan::{plan, validate, Applied, AppliedKind, Plan};
use super::{duration_ms_ceil, Descriptor, LimitError, Limiter};
use crate::config::{Config, DEFAULT_LEASE_TTL};
use crate::storage::{BucketRequest, LeaseBucketOutcome, Store};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRequest {
    pub domain: String,
    pub descriptors: Vec<Descriptor>,
    /// Requests' worth of tokens wanted; at least 1.
    pub want: u64,
    /// Raises `want` to at least the lease size divided by this (0: no floor). RLQS uses it:
    /// Envoy cannot ask again before its next report, so even a quiet bucket gets a share.
    pub floor_divisor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseMode {
    /// No limit matched: admit without tokens until the answer expires.
    Unlimited,
    /// Tokens may be held until they expire.
    Leased,
    /// At most one token, for the request that asked, now.
    Exact,
}

impl LeaseMode {
    /// Metrics label.
    pub fn name(self) -> &'static str {
        match self {
            LeaseMode::Unlimited => "unlimited",
            LeaseMode::Leased => "leased",
            LeaseMode::Exact => "exact",
        }
    }
}

/// One matched, enforced limit after the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitState {
    /// The limit's `name`, else the request's entries (`tenant=acme,user=bob`).
    pub name: String,
    pub requests_per_unit: u32,
    /// The unit in seconds, times `unit_multiplier`.
    pub unit_seconds: u64,
    /// Whole requests the bucket still admits.
    pub remaining: u64,
    /// Until the bucket is full again (token bucket) or its window ends, in ms.
    pub reset_ms: u64,
    /// Until the bucket can admit one more request, in ms (0: now).
    pub next_token_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseDecision {
    pub mode: LeaseMode,
    pub granted: u64,
    pub expires_in_ms: u64,
    /// Until every matched bucket could grant one request again, in ms; 0 when granted > 0.
    pub retry_after_ms: u64,
    /// The matched enforced limits, in the order of the request's descriptors.
    pub limits: Vec<LimitState>,
    /// What to ask for next: the lease size (1 for EXACT, 0 for UNLIMITED).
    pub lease_size: u32,
    /// The store was called (false: decided from config or the local cache alone).
    pub store_called: bool,
}

impl LeaseDecision {
    fn unlimited(ttl: Duration) -> Self {
        LeaseDecision {
            mode: LeaseMode::Unlimited,
            granted: 0,
            expires_in_ms: duration_ms_ceil(ttl),
            retry_after_ms: 0,
            limits: Vec::new(),
            lease_size: 0,
            store_called: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReturnRequest {
    pub domain: String,
    pub descriptors: Vec<Descriptor>,
    /// Requests' worth of unspent tokens.
    pub tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnDecision {
    /// The most tokens any matched leased bucket took back (fewer than given when a bucket
    /// refilled to capacity or its window ended meanwhile; 0 for exact or unlimited limits).
    pub returned: u64,
    pub store_called: bool,
}

/// What is known about the buckets of a lease call.
enum Known {
    /// The store's answer, one per bucket.
    Store(Vec<LeaseBucketOutcome>),
    /// Decided without the store: a zero limit, or the cache (time left per bucket, if cached).
    Refused(Vec<Option<Duration>>),
}

impl<S: Store> Limiter<S> {
    /// Leases tokens for one descriptor set. `now` anchors the local over-limit cache.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(domain = %request.domain, want = request.want)
    )]
    pub async fn lease(
        &self,
        config: &Config,
        request: &LeaseRequest,
        now: Instant,
    ) -> Result<LeaseDecision, LimitError> {
        validate(&request.domain, &request.descriptors)?;
        if request.want == 0 {
            return Err(LimitError::InvalidRequest("want must be at least 1".into()));
        }
        let Some(domain) = config.domain(&request.domain) else {
            return Ok(LeaseDecision::unlimited(DEFAULT_LEASE_TTL));
        };
        let Plan { applied, buckets } = plan(domain, &request.descriptors, 1);
        let limited: Vec<&Applied<'_>> = applied.iter().filter(|a| !a.limit.unlimited).collect();
        let Some(terms) = Terms::of(&limited) else {
            return Ok(LeaseDecision::unlimited(domain.unlimited_ttl));
        };
        let size = u64::from(terms.lease_size);
        let floor = size.checked_div(request.floor_divisor).unwrap_or(0);
        let want = request.want.max(floor).min(size);
        let (granted, known) = self.take(&limited, &buckets, want, now).await?;
        let limits: Vec<LimitState> = limited
            .iter()
            .filter(|a| !a.limit.shadow_mode)
            .map(|a| limit_state(a, &known, &request.descriptors))
            .collect();
        let retry_after_ms = if granted > 0 {
            0
        } else {
            limits
                .iter()
                .map(|l| l.next_token_ms)
                .max()
                .unwrap_or(0)
                .max(1)
        };
        Ok(LeaseDecision {
            mode: terms.mode,
            granted,
            expires_in_ms: duration_ms_ceil(terms.ttl),
            retry_after_ms,
            limits,
            lease_size: terms.lease_size,
            store_called: matches!(known, Known::Store(_)),
        })
    }

    /// Charges the grant to every bucket in one store call, unless an enforced zero limit or a
    /// bucket the local cache knows to be empty refuses it first.
    async fn take(
        &self,
        limited: &[&Applied<'_>],
        buckets: &[BucketRequest],
        want: u64,
        now: Instant,
    ) -> Result<(u64, Known), LimitError> {
        let zero_blocks = limited
            .iter()
            .any(|a| matches!(a.kind, AppliedKind::Zero) && !a.limit.shadow_mode);
        let cached: Vec<Option<Duration>> = buckets
            .iter()
            .map(|b| {
                if b.enforce {
                    self.cache.empty_for(&b.key, now)
                } else {
                    None
                }
            })
            .collect();
        if zero_blocks || cached.iter().any(Option::is_some) {
            return Ok((0, Known::Refused(cached)));
        }
        let outcome = self.store.lease(buckets, want).await?;
        for (bucket, o) in buckets.iter().zip(&outcome.buckets) {
            if bucket.enforce && o.empty_ms > 0 {
                self.remember_empty(&bucket.key, now, o.empty_ms);
            }
        }
        Ok((outcome.granted, Known::Store(outcome.buckets)))
    }

    /// Gives unspent tokens back to the leased buckets the descriptors match.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(domain = %request.domain, tokens = request.tokens)
    )]
    pub async fn give_back(
        &self,
        config: &Config,
        request: &ReturnRequest,
    ) -> Result<ReturnDecision, LimitError> {
        validate(&request.domain, &request.descriptors)?;
        let nothing = ReturnDecision {
            returned: 0,
            store_called: false,
        };
        let Some(domain) = config.domain(&request.domain) else {
            return Ok(nothing);
        };
        let Plan { applied, buckets } = plan(domain, &request.descriptors, 1);
        let leased: Vec<BucketRequest> = leased_buckets(&applied, buckets);
        if leased.is_empty() || request.tokens == 0 {
            return Ok(nothing);
        }
        let restored = self.store.give_back(&leased, request.tokens).await?;
        for bucket in &leased {
            self.cache.forget(&bucket.key);
        }
        Ok(ReturnDecision {
            returned: restored.into_iter().max().unwrap_or(0),
            store_called: true,
        })
    }
}

/// The buckets whose limit is in leased mode (exact tokens are spent at once: never returned).
fn leased_buckets(applied: &[Applied<'_>], buckets: Vec<BucketRequest>) -> Vec<BucketRequest> {
    buckets
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            applied.iter().any(|a| {
                matches!(a.kind, AppliedKind::Bucket(j) if j == *i) && a.limit.mode.is_leased()
            })
        })
        .map(|(_, b)| b)
        .collect()
}

/// How a lease for these limits works: mode, size and lifetime.
struct Terms {
    mode: LeaseMode,
    lease_size: u32,
    ttl: Duration,
}

impl Terms {
    /// `None` when no limit applies (every matched one is `unlimited`).
    fn of(limited: &[&Applied<'_>]) -> Option<Terms> {
        let ttl = limited.iter().map(|a| a.limit.lease_ttl).min()?;
        let exact = limited.iter().any(|a| !a.limit.mode.is_leased());
        let lease_size = limited
            .iter()
            .map(|a| a.limit.mode.lease_size())
            .min()
            .unwrap_or(1);
        Some(Terms {
            mode: if exact {
                LeaseMode::Exact
            } else {
                LeaseMode::Leased
            },
            lease_size: if exact { 1 } else { lease_size },
            ttl,
        })
    }
}

fn limit_state(a: &Applied<'_>, known: &Known, descriptors: &[Descriptor]) -> LimitState {
    let limit = &a.limit;
    let period_ms = limit.period_secs().saturating_mul(1000);
    let (remaining, reset_ms, next_token_ms) = match (&a.kind, known) {
        (AppliedKind::Zero, _) => (0, period_ms, period_ms),
        (AppliedKind::Bucket(i), Known::Store(outcomes)) => outcomes
            .get(*i)
            .map_or((0, 0, 0), |o| (o.remaining, o.reset_ms, o.next_token_ms)),
        (AppliedKind::Bucket(i), Known::Refused(cached)) => match cached.get(*i) {
            Some(Some(left)) => {
                let ms = duration_ms_ceil(*left);
                (0, ms, ms)
            }
            // Another bucket refused without the store: nothing measured here.
            _ => (0, 0, 0),
        },
        (AppliedKind::Unlimited, _) => (0, 0, 0),
    };
    LimitState {
        name: limit.name.clone().unwrap_or_else(|| {
            descriptors[a.descriptor]
                .entries
                .iter()
                .map(|e| format!("{}={}", e.key, e.value))
                .collect::<Vec<_>>()
                .join(",")
        }),
        requests_per_unit: limit.requests_per_unit,
        unit_seconds: limit.period_secs(),
        remaining,
        reset_ms,
        next_token_ms,
    }
}

#[cfg(test)]
mod tests;
