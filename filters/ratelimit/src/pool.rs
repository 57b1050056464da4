//! A token pool: the tokens one Envoy holds for one list of descriptors, in proxy-wasm shared
//! data so every worker spends from it. Pure functions of (pool, now): [`take`] decides a
//! request, [`apply`] folds a lease answer in. The host side does the compare-and-swap.

use crate::pb::{LeaseMode, LeaseResponse};

/// What the pool knows of its descriptors' limits, for the response headers: the limit with
/// the fewest requests left when the last lease was granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitView {
    pub requests_per_unit: u32,
    pub unit_seconds: u32,
    /// Whole requests the service's bucket still had after the last grant.
    pub remaining: u64,
    /// When that bucket is full again (or its window ends), Unix ms.
    pub reset_at_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Nothing asked yet.
    #[default]
    Unknown,
    /// No limit applies: admit without tokens until `expires_ms`.
    Unlimited,
    /// Tokens may be held until `expires_ms`.
    Leased,
    /// Every request needs its own token from the service.
    Exact,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pool {
    pub mode: Mode,
    pub tokens: u32,
    pub expires_ms: u64,
    /// A background refill is in flight (from some worker) until then.
    pub refill_until_ms: u64,
    /// The service granted nothing: refuse until then without asking.
    pub empty_until_ms: u64,
    /// The lease size the service suggested.
    pub lease_size: u32,
    pub limit: LimitView,
}

/// What [`take`] decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Admitted: a token was spent (or no limit applies). `refill`: the pool fell to its low
    /// water mark and this request was chosen to start the background refill.
    Admit {
        refill: bool,
        limit: LimitView,
        left: u32,
    },
    /// The service said no token before `retry_after_ms` from now: 429.
    Refuse {
        retry_after_ms: u64,
        limit: LimitView,
    },
    /// No token held: wait for a lease (exact mode: a lease of one, for this request).
    Wait,
}

/// Decides one request against `pool` at `now`; returns the pool to write back (None: nothing
/// changed) and the decision. `low_water`: a pool left with this many tokens or fewer refills.
pub fn take(
    pool: Option<Pool>,
    now: u64,
    refill_for_ms: u64,
    low_water: u32,
) -> (Option<Pool>, Take) {
    let Some(mut p) = pool else {
        return (None, Take::Wait);
    };
    let live = now < p.expires_ms;
    match p.mode {
        Mode::Unlimited if live => {
            let admit = Take::Admit {
                refill: false,
                limit: p.limit,
                left: 0,
            };
            return (None, admit);
        }
        Mode::Exact => return (None, Take::Wait),
        _ => {}
    }
    if live && p.tokens > 0 {
        p.tokens -= 1;
        let refill = p.tokens <= low_water && p.refill_until_ms <= now;
        if refill {
            p.refill_until_ms = now.saturating_add(refill_for_ms);
        }
        let left = p.tokens;
        return (
            Some(p),
            Take::Admit {
                refill,
                limit: p.limit,
                left,
            },
        );
    }
    if now < p.empty_until_ms {
        let retry_after_ms = p.empty_until_ms - now;
        return (
            None,
            Take::Refuse {
                retry_after_ms,
                limit: p.limit,
            },
        );
    }
    (None, Take::Wait)
}

/// A worker takes at most this many tokens beyond its request's into its own sub-pool.
pub const CHUNK: u32 = 7;

/// [`take`], and for a live leased pool holding plenty also up to [`CHUNK`] more tokens for
/// the worker's sub-pool: a sixteenth of what the pool holds, so that near the end of a lease
/// (or of a limit) workers do not hoard what the others could spend. Returns those extra
/// tokens with the decision; the low water mark counts what is left in the pool.
pub fn take_chunk(
    pool: Option<Pool>,
    now: u64,
    refill_for_ms: u64,
    low_water: u32,
) -> (Option<Pool>, Take, u32) {
    let extra = match pool {
        Some(p) if p.mode == Mode::Leased && now < p.expires_ms && p.tokens > 0 => {
            ((p.tokens - 1) / 16).min(CHUNK)
        }
        _ => 0,
    };
    let pool = pool.map(|mut p| {
        p.tokens -= extra;
        p
    });
    let (next, take) = take(pool, now, refill_for_ms, low_water);
    (next, take, extra)
}

/// Folds a lease answer into the pool (the tokens join the pool unless the mode is exact: an
/// exact grant belongs to the request that asked). The pool's expiry becomes the answer's.
pub fn apply(pool: Option<Pool>, answer: &LeaseResponse, now: u64, sent_ms: u64) -> Pool {
    let mut p = pool.unwrap_or_default();
    let live_tokens = if now < p.expires_ms { p.tokens } else { 0 };
    p.mode = match LeaseMode::try_from(answer.mode) {
        Ok(LeaseMode::Leased) => Mode::Leased,
        Ok(LeaseMode::Exact) => Mode::Exact,
        _ => Mode::Unlimited,
    };
    p.tokens = match p.mode {
        Mode::Leased => live_tokens.saturating_add(answer.granted),
        _ => 0,
    };
    // The lease's lifetime counts from when it was asked for (the service's clock started
    // then), so a token is never spent later than the service allowed.
    p.expires_ms = sent_ms.min(now).saturating_add(answer.expires_in_ms);
    p.refill_until_ms = 0;
    p.empty_until_ms = if answer.granted == 0 && p.mode == Mode::Leased && p.tokens == 0 {
        now.saturating_add(answer.retry_after_ms.max(1))
    } else {
        0
    };
    p.lease_size = answer.lease_size.max(1);
    p.limit = tightest(answer, now).unwrap_or(p.limit);
    p
}

/// The limit to show: after a refusal, one of those that refused (they are the ones with a
/// wait before their next token); otherwise the one with the fewest requests left. Limits the
/// service did not read (reported as all zero) are never chosen.
pub fn tightest(answer: &LeaseResponse, now: u64) -> Option<LimitView> {
    let known = answer.limits.iter().filter(|l| l.requests_per_unit > 0);
    let refusing = known.clone().filter(|l| l.next_token_ms > 0);
    let chosen = if answer.granted == 0 && refusing.clone().next().is_some() {
        refusing.max_by_key(|l| l.next_token_ms)
    } else {
        known.min_by_key(|l| l.remaining)
    };
    chosen.map(|l| LimitView {
        requests_per_unit: l.requests_per_unit,
        unit_seconds: l.unit_seconds,
        remaining: l.remaining,
        reset_at_ms: now.saturating_add(l.reset_ms),
    })
}

const VERSION: u8 = 1;
const BYTES: usize = 2 + 4 + 8 * 3 + 4 + 4 + 4 + 8 + 8;

impl Pool {
    /// The length of an encoded pool.
    pub const BYTES: usize = BYTES;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BYTES);
        let mode = match self.mode {
            Mode::Unknown => 0u8,
            Mode::Unlimited => 1,
            Mode::Leased => 2,
            Mode::Exact => 3,
        };
        out.extend_from_slice(&[VERSION, mode]);
        out.extend_from_slice(&self.tokens.to_be_bytes());
        for v in [self.expires_ms, self.refill_until_ms, self.empty_until_ms] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        let l = &self.limit;
        for v in [self.lease_size, l.requests_per_unit, l.unit_seconds] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&l.remaining.to_be_bytes());
        out.extend_from_slice(&l.reset_at_ms.to_be_bytes());
        out
    }

    /// A value another version wrote (or garbage) reads as no pool.
    pub fn decode(bytes: &[u8]) -> Option<Pool> {
        if bytes.len() != BYTES || bytes[0] != VERSION {
            return None;
        }
        let mut at = 2;
        let mut next = |n: usize| {
            let v = bytes[at..at + n]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            at += n;
            v
        };
        let mode = match bytes[1] {
            1 => Mode::Unlimited,
            2 => Mode::Leased,
            3 => Mode::Exact,
            _ => Mode::Unknown,
        };
        let u32_of = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Some(Pool {
            mode,
            tokens: u32_of(next(4)),
            expires_ms: next(8),
            refill_until_ms: next(8),
            empty_until_ms: next(8),
            lease_size: u32_of(next(4)),
            limit: LimitView {
                requests_per_unit: u32_of(next(4)),
                unit_seconds: u32_of(next(4)),
                remaining: next(8),
                reset_at_ms: next(8),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_a_sixteenth_of_a_full_pool_and_nothing_from_a_small_one() {
        let pool = |tokens| Pool {
            mode: Mode::Leased,
            tokens,
            expires_ms: 10_000,
            lease_size: 100,
            ..Pool::default()
        };
        let (next, take, extra) = take_chunk(Some(pool(100)), 0, 250, 50);
        assert_eq!(extra, 6);
        assert_eq!(next.unwrap().tokens, 93);
        assert!(matches!(
            take,
            Take::Admit {
                refill: false,
                left: 93,
                ..
            }
        ));
        let (next, _, extra) = take_chunk(Some(pool(1000)), 0, 250, 50);
        assert_eq!((extra, next.unwrap().tokens), (CHUNK, 992));
        let (next, _, extra) = take_chunk(Some(pool(16)), 0, 250, 50);
        assert_eq!((extra, next.unwrap().tokens), (0, 15));
        // The low water mark sees what is left after the chunk.
        let (_, take, extra) = take_chunk(Some(pool(54)), 0, 250, 50);
        assert_eq!(extra, 3);
        assert!(matches!(
            take,
            Take::Admit {
                refill: true,
                left: 50,
                ..
            }
        ));
        // Expired, exact or unlimited pools give no chunk.
        assert_eq!(take_chunk(Some(pool(100)), 10_000, 250, 50).2, 0);
    }

    use crate::pb::LimitState;

    fn answer(mode: LeaseMode, granted: u32) -> LeaseResponse {
        LeaseResponse {
            mode: mode as i32,
            granted,
            expires_in_ms: 5_000,
            retry_after_ms: if granted == 0 { 700 } else { 0 },
            limits: vec![LimitState {
                name: "tenant".into(),
                requests_per_unit: 100,
                unit_seconds: 60,
                remaining: 40,
                reset_ms: 30_000,
                next_token_ms: 0,
            }],
            lease_size: 10,
        }
    }

    #[test]
    fn tokens_are_spent_one_per_request_and_the_low_water_mark_starts_one_refill() {
        let pool = apply(None, &answer(LeaseMode::Leased, 3), 1_000, 1_000);
        let (p, t) = take(Some(pool), 1_001, 250, 1);
        assert!(
            matches!(
                t,
                Take::Admit {
                    refill: false,
                    left: 2,
                    ..
                }
            ),
            "{t:?}"
        );
        let (p, t) = take(p, 1_002, 250, 1);
        assert!(
            matches!(
                t,
                Take::Admit {
                    refill: true,
                    left: 1,
                    ..
                }
            ),
            "{t:?}"
        );
        let (p, t) = take(p, 1_003, 250, 1);
        assert!(
            matches!(
                t,
                Take::Admit {
                    refill: false,
                    left: 0,
                    ..
                }
            ),
            "one refill at a time"
        );
        assert_eq!(take(p, 1_004, 250, 1).1, Take::Wait);
    }

    #[test]
    fn expired_tokens_are_not_spent() {
        let pool = apply(None, &answer(LeaseMode::Leased, 3), 1_000, 1_000);
        assert_eq!(take(Some(pool), 6_000, 250, 0).1, Take::Wait);
    }

    #[test]
    fn an_empty_grant_refuses_until_the_service_said() {
        let pool = apply(None, &answer(LeaseMode::Leased, 0), 1_000, 1_000);
        let (_, t) = take(Some(pool), 1_100, 250, 0);
        assert!(
            matches!(
                t,
                Take::Refuse {
                    retry_after_ms: 600,
                    ..
                }
            ),
            "{t:?}"
        );
        assert_eq!(take(Some(pool), 1_700, 250, 0).1, Take::Wait);
    }

    #[test]
    fn exact_grants_never_join_the_pool_and_unlimited_needs_no_token() {
        let exact = apply(None, &answer(LeaseMode::Exact, 1), 1_000, 1_000);
        assert_eq!(exact.tokens, 0);
        assert_eq!(take(Some(exact), 1_001, 250, 0).1, Take::Wait);
        let free = apply(None, &answer(LeaseMode::Unlimited, 0), 1_000, 1_000);
        assert!(matches!(
            take(Some(free), 1_001, 250, 0).1,
            Take::Admit { .. }
        ));
        assert_eq!(
            take(Some(free), 7_000, 250, 0).1,
            Take::Wait,
            "until it expires"
        );
    }

    #[test]
    fn pools_round_trip_and_garbage_reads_as_none() {
        let pool = apply(None, &answer(LeaseMode::Leased, 7), 1_000, 1_000);
        assert_eq!(Pool::decode(&pool.encode()), Some(pool));
        assert_eq!(Pool::decode(b"nonsense"), None);
    }
}
