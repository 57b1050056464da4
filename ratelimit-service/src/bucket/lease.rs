//! Leases and give-backs as pure functions, built on [`evaluate`] so that a Lease call reads a
//! bucket exactly as ShouldRateLimit does. `storage/redis/lease.lua` mirrors this.
//!
//! A lease call takes `grant` requests' worth of tokens from every bucket of the call, where
//! each bucket costs `weight` tokens per request (the number of the call's descriptors that
//! charge it; 1 unless descriptors repeat) and
//!
//! ```text
//! grant = min(want, min over enforced buckets of floor(whole tokens / weight))
//! ```
//!
//! so every enforced bucket can pay the whole grant, and all of them pay it (all or nothing).
//! Shadow-mode buckets pay it when they can, and never lower the grant.

use super::{ceil_ms, evaluate, BucketSpec, BucketState, Evaluation, EPSILON};

/// One bucket of a lease or give-back call, with its current state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseInput {
    pub spec: BucketSpec,
    pub state: Option<BucketState>,
    /// Tokens one granted request costs this bucket (at least 1).
    pub weight: u64,
    /// False for shadow mode: charged when it can pay, never limiting.
    pub enforce: bool,
}

/// What a lease did to one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseEffect {
    /// The bucket after the grant: `remaining`, `reset_ms`, `empty_ms`; `new_state` is `Some`
    /// when it was charged (then `ttl_ms` applies).
    pub eval: Evaluation,
    /// Until the bucket could pay for one more request (`weight` tokens), in ms, rounded up;
    /// 0 when it can now.
    pub next_token_ms: u64,
}

/// Whole tokens a bucket holds now: what a check of zero hits reports as remaining.
pub fn whole_tokens(spec: &BucketSpec, state: Option<BucketState>, now_us: u64) -> u64 {
    evaluate(spec, state, now_us, 0, false).remaining
}

/// The grant every enforced bucket can pay, at most `want`.
pub fn grant(inputs: &[LeaseInput], now_us: u64, want: u64) -> u64 {
    inputs
        .iter()
        .filter(|b| b.enforce)
        .map(|b| whole_tokens(&b.spec, b.state, now_us) / b.weight.max(1))
        .fold(want, u64::min)
}

/// Takes the grant from every bucket that can pay it (every enforced one can): the grant and
/// one effect per input, in order.
pub fn lease(inputs: &[LeaseInput], now_us: u64, want: u64) -> (u64, Vec<LeaseEffect>) {
    let granted = grant(inputs, now_us, want);
    let effects = inputs
        .iter()
        .map(|b| {
            let weight = b.weight.max(1);
            let charge = granted.saturating_mul(weight);
            // 0 hits only reads the bucket; a shadow bucket that cannot pay is not charged.
            let eval = evaluate(&b.spec, b.state, now_us, charge, true);
            let after = eval.new_state.or(b.state);
            let next_token_ms = evaluate(&b.spec, after, now_us, weight, false).retry_ms;
            LeaseEffect {
                eval,
                next_token_ms,
            }
        })
        .collect();
    (granted, effects)
}

/// What a give-back did to one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GiveBack {
    /// Whole requests' worth of tokens the bucket took back.
    pub restored: u64,
    /// State to store, if anything changed.
    pub new_state: Option<BucketState>,
    /// New expiry of the key in ms from now (token buckets); `None` keeps the current one.
    pub ttl_ms: Option<u64>,
}

const NOTHING: GiveBack = GiveBack {
    restored: 0,
    new_state: None,
    ttl_ms: None,
};

/// Gives `requests` requests' worth of tokens (`requests * weight`) back to one bucket. A token
/// bucket refills, capped at its burst; a window bucket's count goes down, not below 0, and only
/// in the window the state belongs to (tokens leased in an earlier window are gone). A bucket
/// with no state is full already: nothing to give back.
pub fn give_back(
    spec: &BucketSpec,
    state: Option<BucketState>,
    now_us: u64,
    requests: u64,
    weight: u64,
) -> GiveBack {
    let weight = weight.max(1);
    let tokens = requests.saturating_mul(weight) as f64;
    let whole = |restored: f64| ((restored + EPSILON) / weight as f64).floor().max(0.0) as u64;
    match state {
        Some(BucketState::Tokens {
            tokens: t,
            updated_us,
        }) => {
            let burst = spec.burst as f64;
            let rate = spec.limit as f64 / spec.period_us as f64;
            let elapsed = now_us.saturating_sub(updated_us) as f64;
            let level = (t + elapsed * rate).min(burst);
            let after = (level + tokens).min(burst);
            if after <= level {
                return NOTHING;
            }
            GiveBack {
                restored: whole(after - level),
                new_state: Some(BucketState::Tokens {
                    tokens: after,
                    updated_us: now_us,
                }),
                ttl_ms: Some(ceil_ms((burst - after) / rate) + 1000),
            }
        }
        Some(BucketState::Window {
            window,
            count,
            previous,
        }) if window == now_us / spec.period_us && count > 0.0 => {
            let after = (count - tokens).max(0.0);
            GiveBack {
                restored: whole(count - after),
                new_state: Some(BucketState::Window {
                    window,
                    count: after,
                    previous,
                }),
                ttl_ms: None,
            }
        }
        _ => NOTHING,
    }
}

#[cfg(test)]
mod tests;
