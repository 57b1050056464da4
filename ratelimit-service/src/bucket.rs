//! Bucket math for the three algorithms, as pure functions of (state, now, hits).
//!
//! This is the reference the Lua script (`storage/redis/rate_limit.lua`) mirrors line for line;
//! the in-memory store runs it directly, and the shared scenario suite checks that both agree.
//! Time is always passed in (microseconds since the Unix epoch), never read here.

mod lease;

pub use lease::{give_back, grant, lease, whole_tokens, GiveBack, LeaseEffect, LeaseInput};

/// Slack for float comparisons: token counts are kept as f64 and refill adds fractions.
pub const EPSILON: f64 = 1e-6;

/// How a limit counts requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Tokens refill continuously at `requests_per_unit` per period, up to `burst`.
    TokenBucket,
    /// A counter per period aligned to the Unix epoch (envoyproxy/ratelimit's behaviour).
    FixedWindow,
    /// Current window's count plus the previous window's weighted by how much of it still
    /// overlaps the sliding period.
    SlidingWindow,
}

impl Algorithm {
    /// Letter used in storage keys and passed to the Lua script.
    pub fn key_letter(self) -> char {
        match self {
            Algorithm::TokenBucket => 't',
            Algorithm::FixedWindow => 'f',
            Algorithm::SlidingWindow => 's',
        }
    }

    /// Name used in YAML.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
        }
    }
}

/// The parameters of one bucket; `limit` and `burst` are at least 1 (a zero limit never
/// reaches a store: it is always over limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    pub algorithm: Algorithm,
    /// Requests admitted per period (refill amount for token buckets).
    pub limit: u64,
    pub period_us: u64,
    /// Token bucket capacity; ignored by the window algorithms.
    pub burst: u64,
}

/// Persistent state of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BucketState {
    Tokens {
        tokens: f64,
        updated_us: u64,
    },
    Window {
        window: u64,
        count: f64,
        previous: f64,
    },
}

/// What one evaluation decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// This bucket alone could admit the hits (for 0 hits: could admit one more request).
    pub allowed: bool,
    /// Whole requests still admissible after this call.
    pub remaining: u64,
    /// Until the bucket is back to full (token bucket) or the window ends, in ms.
    pub reset_ms: u64,
    /// Until these hits could be admitted, in ms (0 when allowed).
    pub retry_ms: u64,
    /// Until at least one request could be admitted, in ms, rounded down; 0 when it can now.
    pub empty_ms: u64,
    /// State to store, if anything was taken.
    pub new_state: Option<BucketState>,
    /// How long an untouched bucket must be kept before it is equivalent to a fresh one, in ms.
    pub ttl_ms: u64,
}

/// Evaluates a bucket. `take` says whether the hits are to be consumed if allowed (the caller
/// decides that from all buckets of the request: all-or-nothing).
pub fn evaluate(
    spec: &BucketSpec,
    state: Option<BucketState>,
    now_us: u64,
    hits: u64,
    take: bool,
) -> Evaluation {
    match spec.algorithm {
        Algorithm::TokenBucket => token_bucket(spec, state, now_us, hits, take),
        Algorithm::FixedWindow => fixed_window(spec, state, now_us, hits, take),
        Algorithm::SlidingWindow => sliding_window(spec, state, now_us, hits, take),
    }
}

/// Hits needed for the check: 0 hits means "check only: is there room for one?".
fn needed(hits: u64) -> f64 {
    hits.max(1) as f64
}

/// Slack for rounding durations: refill arithmetic leaves 99999.99999 us where 100 ms is meant.
const ROUNDING_US: f64 = 1e-3;

fn ceil_ms(us: f64) -> u64 {
    if us <= ROUNDING_US {
        0
    } else {
        ((us - ROUNDING_US) / 1000.0).ceil() as u64
    }
}

fn floor_ms(us: f64) -> u64 {
    if us <= 0.0 {
        0
    } else {
        ((us + ROUNDING_US) / 1000.0).floor() as u64
    }
}

fn token_bucket(
    spec: &BucketSpec,
    state: Option<BucketState>,
    now_us: u64,
    hits: u64,
    take: bool,
) -> Evaluation {
    let burst = spec.burst as f64;
    let rate = spec.limit as f64 / spec.period_us as f64; // tokens per microsecond
    let tokens = match state {
        Some(BucketState::Tokens { tokens, updated_us }) => {
            let elapsed = now_us.saturating_sub(updated_us) as f64;
            (tokens + elapsed * rate).min(burst)
        }
        _ => burst,
    };
    let need = needed(hits);
    let allowed = tokens + EPSILON >= need;
    let taken = allowed && take && hits > 0;
    let after = if taken { tokens - hits as f64 } else { tokens };
    let retry_ms = if allowed {
        0
    } else if need > burst + EPSILON {
        // Never admissible: point at the moment the bucket is full again.
        ceil_ms((burst - tokens) / rate).max(1)
    } else {
        ceil_ms((need - tokens) / rate).max(1)
    };
    let empty_ms = if after + EPSILON < 1.0 {
        floor_ms((1.0 - after) / rate)
    } else {
        0
    };
    let reset_ms = ceil_ms((burst - after) / rate);
    Evaluation {
        allowed,
        remaining: (after + EPSILON).floor().max(0.0) as u64,
        reset_ms,
        retry_ms,
        empty_ms,
        new_state: taken.then_some(BucketState::Tokens {
            tokens: after,
            updated_us: now_us,
        }),
        ttl_ms: reset_ms + 1000,
    }
}

fn fixed_window(
    spec: &BucketSpec,
    state: Option<BucketState>,
    now_us: u64,
    hits: u64,
    take: bool,
) -> Evaluation {
    let limit = spec.limit as f64;
    let window = now_us / spec.period_us;
    let count = match state {
        Some(BucketState::Window {
            window: w, count, ..
        }) if w == window => count,
        _ => 0.0,
    };
    let need = needed(hits);
    let allowed = count + need <= limit + EPSILON;
    let taken = allowed && take && hits > 0;
    let after = if taken { count + hits as f64 } else { count };
    let until_end = ((window + 1) * spec.period_us - now_us) as f64;
    Evaluation {
        allowed,
        remaining: (limit - after + EPSILON).floor().max(0.0) as u64,
        reset_ms: ceil_ms(until_end),
        retry_ms: if allowed {
            0
        } else {
            ceil_ms(until_end).max(1)
        },
        empty_ms: if after + 1.0 > limit + EPSILON {
            floor_ms(until_end)
        } else {
            0
        },
        new_state: taken.then_some(BucketState::Window {
            window,
            count: after,
            previous: 0.0,
        }),
        ttl_ms: ceil_ms(until_end) + 1000,
    }
}

fn sliding_window(
    spec: &BucketSpec,
    state: Option<BucketState>,
    now_us: u64,
    hits: u64,
    take: bool,
) -> Evaluation {
    let limit = spec.limit as f64;
    let period = spec.period_us as f64;
    let window = now_us / spec.period_us;
    let (current, previous) = match state {
        Some(BucketState::Window {
            window: w,
            count,
            previous,
        }) if w == window => (count, previous),
        Some(BucketState::Window {
            window: w, count, ..
        }) if w + 1 == window => (0.0, count),
        _ => (0.0, 0.0),
    };
    let elapsed = (now_us - window * spec.period_us) as f64 / period;
    let estimate = previous * (1.0 - elapsed) + current;
    let need = needed(hits);
    let allowed = estimate + need <= limit + EPSILON;
    let taken = allowed && take && hits > 0;
    let current_after = if taken {
        current + hits as f64
    } else {
        current
    };
    let estimate_after = previous * (1.0 - elapsed) + current_after;
    let until_end = ((window + 1) * spec.period_us - now_us) as f64;
    let retry_ms = if allowed {
        0
    } else {
        ceil_ms(sliding_wait(
            previous, current, elapsed, need, limit, period,
        ))
        .max(1)
    };
    let empty_ms = if estimate_after + 1.0 > limit + EPSILON {
        floor_ms(sliding_wait(
            previous,
            current_after,
            elapsed,
            1.0,
            limit,
            period,
        ))
    } else {
        0
    };
    Evaluation {
        allowed,
        remaining: (limit - estimate_after + EPSILON).floor().max(0.0) as u64,
        reset_ms: ceil_ms(until_end),
        retry_ms,
        empty_ms,
        new_state: taken.then_some(BucketState::Window {
            window,
            count: current_after,
            previous,
        }),
        ttl_ms: ceil_ms(until_end + period) + 1000,
    }
}

/// Microseconds until `previous * (1 - f) + current + need <= limit`, assuming no new hits.
fn sliding_wait(
    previous: f64,
    current: f64,
    elapsed: f64,
    need: f64,
    limit: f64,
    period: f64,
) -> f64 {
    let budget = limit - need;
    if current <= budget + EPSILON {
        if previous * (1.0 - elapsed) + current <= budget + EPSILON || previous <= 0.0 {
            return 0.0;
        }
        let at = 1.0 - (budget - current) / previous;
        return ((at - elapsed) * period).max(0.0);
    }
    // Only the next window can help: then `current` becomes the weighted previous count.
    if budget < 0.0 {
        return (1.0 - elapsed) * period + period;
    }
    let at = 1.0 - budget / current;
    (1.0 - elapsed) * period + at * period
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    fn spec(algorithm: Algorithm, limit: u64, period_s: u64, burst: u64) -> BucketSpec {
        BucketSpec {
            algorithm,
            limit,
            period_us: period_s * SEC,
            burst,
        }
    }

    /// Runs `n` single hits at `now`, threading the state; returns the admitted count.
    fn drive(spec: &BucketSpec, state: &mut Option<BucketState>, now: u64, n: u64) -> u64 {
        let mut admitted = 0;
        for _ in 0..n {
            let eval = evaluate(spec, *state, now, 1, true);
            if eval.allowed {
                admitted += 1;
                *state = eval.new_state;
            }
        }
        admitted
    }

    #[test]
    fn token_bucket_starts_full_and_refills_continuously() {
        let s = spec(Algorithm::TokenBucket, 10, 1, 10);
        let t0 = 1_700_000_000 * SEC;
        let mut state = None;
        assert_eq!(drive(&s, &mut state, t0, 15), 10);
        // 10 per second: one token every 100 ms.
        let eval = evaluate(&s, state, t0, 1, true);
        assert!(!eval.allowed);
        assert_eq!(eval.retry_ms, 100);
        assert_eq!(eval.empty_ms, 100);
        assert_eq!(eval.remaining, 0);
        assert_eq!(eval.reset_ms, 1000);
        assert_eq!(drive(&s, &mut state, t0 + 99_999, 1), 0);
        assert_eq!(drive(&s, &mut state, t0 + 100_000, 2), 1);
        assert_eq!(drive(&s, &mut state, t0 + 10 * SEC, 20), 10);
    }

    #[test]
    fn token_bucket_burst_differs_from_rate() {
        let s = spec(Algorithm::TokenBucket, 1, 1, 5);
        let t0 = 42 * SEC;
        let mut state = None;
        assert_eq!(drive(&s, &mut state, t0, 10), 5);
        assert_eq!(drive(&s, &mut state, t0 + 2 * SEC, 10), 2);
    }

    #[test]
    fn token_bucket_multi_hit_retry_and_oversized_request() {
        let s = spec(Algorithm::TokenBucket, 10, 1, 10);
        let t0 = 5 * SEC;
        let eval = evaluate(&s, None, t0, 8, true);
        assert!(eval.allowed);
        assert_eq!(eval.remaining, 2);
        let eval = evaluate(&s, eval.new_state, t0, 5, true);
        assert!(!eval.allowed);
        assert_eq!(eval.retry_ms, 300);
        assert_eq!(eval.new_state, None);
        assert_eq!(eval.empty_ms, 0, "two tokens left: not empty");
        let huge = evaluate(&s, None, t0, u64::MAX, true);
        assert!(!huge.allowed);
        assert!(huge.retry_ms >= 1);
    }

    #[test]
    fn zero_hits_checks_without_taking() {
        let s = spec(Algorithm::TokenBucket, 1, 60, 1);
        let eval = evaluate(&s, None, SEC, 0, true);
        assert!(eval.allowed);
        assert_eq!(eval.new_state, None);
        let taken = evaluate(&s, None, SEC, 1, true);
        let check = evaluate(&s, taken.new_state, SEC, 0, true);
        assert!(!check.allowed);
    }

    #[test]
    fn fixed_window_resets_at_window_end() {
        let s = spec(Algorithm::FixedWindow, 3, 60, 3);
        let t0 = 600 * SEC + 10 * SEC; // 10 s into a minute window
        let mut state = None;
        assert_eq!(drive(&s, &mut state, t0, 5), 3);
        let eval = evaluate(&s, state, t0, 1, true);
        assert_eq!(eval.retry_ms, 50_000);
        assert_eq!(eval.empty_ms, 50_000);
        assert_eq!(drive(&s, &mut state, t0 + 49 * SEC, 1), 0);
        assert_eq!(drive(&s, &mut state, t0 + 50 * SEC, 5), 3);
    }

    #[test]
    fn sliding_window_weights_previous_window() {
        let s = spec(Algorithm::SlidingWindow, 10, 10, 10);
        let t0 = 1000 * SEC; // window start
        let mut state = None;
        assert_eq!(drive(&s, &mut state, t0, 12), 10);
        // Halfway into the next window, the previous 10 weigh 5.
        assert_eq!(drive(&s, &mut state, t0 + 15 * SEC, 10), 5);
        let eval = evaluate(&s, state, t0 + 15 * SEC, 1, true);
        assert!(!eval.allowed);
        // Estimate 10 = 10*(1-0.5) + 5; one hit fits once 10*(1-f) <= 4, i.e. f = 0.6: 1 s.
        assert_eq!(eval.retry_ms, 1000);
        assert_eq!(eval.empty_ms, 1000);
    }
}
