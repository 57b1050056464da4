//! The remote JWKS lifecycle of one provider as a pure state machine (time passed in): fresh,
//! stale (kept up to `max_stale` while the IdP is down), expired; background refresh before
//! expiry; one unknown-`kid` refetch per interval; backoff after failures; a fetch lease so one
//! worker fetches for all. The glue stores [`JwksState`] and the last good JWKS in proxy-wasm
//! shared data and updates them with compare-and-swap.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksPolicy {
    pub cache_duration_ms: u64,
    pub max_stale_ms: u64,
    pub fetch_timeout_ms: u64,
    /// At most one unknown-`kid` refetch per this interval.
    pub kid_refetch_interval_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            cache_duration_ms: 600_000,
            max_stale_ms: 86_400_000,
            fetch_timeout_ms: 5_000,
            kid_refetch_interval_ms: 30_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 300_000,
        }
    }
}

/// What every worker agrees on about one provider's keys (serialized into shared data).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksState {
    /// Bumped with every accepted key set; a worker reloads its keys when it changes.
    pub generation: u64,
    /// When the current keys were fetched (Unix ms); `None` until the first success.
    pub fetched_at_ms: Option<u64>,
    /// Consecutive failed fetches.
    pub failures: u32,
    /// No routine fetch before this (backoff after failures).
    pub retry_at_ms: u64,
    /// A fetch is in flight until this; past it the lease is void (a worker died mid-fetch).
    pub lease_until_ms: u64,
    pub last_kid_refetch_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Never fetched successfully.
    Empty,
    Fresh,
    /// Past `cache_duration`, within `max_stale`: still used while refreshing.
    Stale,
    /// Past `max_stale`: not used.
    Expired,
}

/// What a request that needs keys (none yet, or an unknown `kid`) should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRequest {
    /// This worker took the lease: dispatch the fetch, then wait for it.
    Fetch,
    /// A fetch is in flight (maybe in another worker): wait for it.
    Wait,
    /// Refused (rate limit or backoff): answer with what the keys say now.
    Refused,
}

impl JwksState {
    pub fn freshness(&self, p: &JwksPolicy, now_ms: u64) -> Freshness {
        match self.fetched_at_ms {
            None => Freshness::Empty,
            Some(at) => {
                let age = now_ms.saturating_sub(at);
                if age < p.cache_duration_ms {
                    Freshness::Fresh
                } else if age < p.cache_duration_ms.saturating_add(p.max_stale_ms) {
                    Freshness::Stale
                } else {
                    Freshness::Expired
                }
            }
        }
    }

    /// The keys may be used until this time (Unix ms).
    pub fn usable_until_ms(&self, p: &JwksPolicy) -> Option<u64> {
        self.fetched_at_ms.map(|at| {
            at.saturating_add(p.cache_duration_ms)
                .saturating_add(p.max_stale_ms)
        })
    }

    pub fn fetch_in_flight(&self, now_ms: u64) -> bool {
        now_ms < self.lease_until_ms
    }

    /// The tick's question: start a background refresh now? Refreshes at 90% of
    /// `cache_duration`, so no request waits for a routine refresh.
    pub fn due_for_refresh(&self, p: &JwksPolicy, now_ms: u64) -> bool {
        if self.fetch_in_flight(now_ms) || now_ms < self.retry_at_ms {
            return false;
        }
        match self.fetched_at_ms {
            None => true,
            Some(at) => now_ms >= at.saturating_add(p.cache_duration_ms / 10 * 9),
        }
    }

    pub fn begin_fetch(&mut self, p: &JwksPolicy, now_ms: u64) {
        // One second of margin over the HTTP timeout, for the response to be handled.
        self.lease_until_ms = now_ms
            .saturating_add(p.fetch_timeout_ms)
            .saturating_add(1_000);
    }

    /// A fetch returned a JWKS that parsed into at least one usable key.
    pub fn on_fetch_success(&mut self, now_ms: u64) {
        self.generation = self.generation.wrapping_add(1);
        self.fetched_at_ms = Some(now_ms);
        self.failures = 0;
        self.retry_at_ms = 0;
        self.lease_until_ms = 0;
    }

    /// A fetch failed, timed out, or returned something that is not a usable JWKS. The last
    /// good keys stay; the next routine attempt waits for an exponential backoff.
    pub fn on_fetch_failure(&mut self, p: &JwksPolicy, now_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(20);
        let backoff = p
            .backoff_initial_ms
            .saturating_mul(1 << shift)
            .min(p.backoff_max_ms);
        self.retry_at_ms = now_ms.saturating_add(backoff);
        self.lease_until_ms = 0;
    }

    /// A request found no key for its `kid`, or there are no usable keys at all. At most one
    /// such fetch per `kid_refetch_interval` (no fetch storm from random `kid`s); requests
    /// arriving while any fetch is in flight wait for it.
    pub fn request_keys(&mut self, p: &JwksPolicy, now_ms: u64) -> KeyRequest {
        if self.fetch_in_flight(now_ms) {
            return KeyRequest::Wait;
        }
        let no_keys = !matches!(
            self.freshness(p, now_ms),
            Freshness::Fresh | Freshness::Stale
        );
        let allowed = if no_keys {
            // Nothing to serve with: fetch unless backing off.
            now_ms >= self.retry_at_ms
        } else {
            self.last_kid_refetch_ms
                .is_none_or(|at| now_ms >= at.saturating_add(p.kid_refetch_interval_ms))
        };
        if !allowed {
            return KeyRequest::Refused;
        }
        if !no_keys {
            self.last_kid_refetch_ms = Some(now_ms);
        }
        self.begin_fetch(p, now_ms);
        KeyRequest::Fetch
    }
}

/// Shared-data value: the state as one JSON line, then the raw JWKS body of the last good
/// fetch. One entry, so one compare-and-swap updates both together.
pub fn encode(state: &JwksState, jwks: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(state).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(jwks);
    out
}

/// The inverse of [`encode`]; `None` for anything else (treated as an empty state).
pub fn decode(bytes: &[u8]) -> Option<(JwksState, &[u8])> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let state = serde_json::from_slice(&bytes[..nl]).ok()?;
    Some((state, &bytes[nl + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: JwksPolicy = JwksPolicy {
        cache_duration_ms: 600_000,
        max_stale_ms: 3_600_000,
        fetch_timeout_ms: 5_000,
        kid_refetch_interval_ms: 30_000,
        backoff_initial_ms: 1_000,
        backoff_max_ms: 60_000,
    };

    fn fetched(at: u64) -> JwksState {
        let mut s = JwksState::default();
        s.on_fetch_success(at);
        s
    }

    #[test]
    fn fresh_stale_expired() {
        let s = fetched(1_000);
        assert_eq!(JwksState::default().freshness(&P, 5), Freshness::Empty);
        assert_eq!(s.freshness(&P, 600_999), Freshness::Fresh);
        assert_eq!(s.freshness(&P, 601_000), Freshness::Stale);
        assert_eq!(s.freshness(&P, 4_200_999), Freshness::Stale);
        assert_eq!(s.freshness(&P, 4_201_000), Freshness::Expired);
        assert_eq!(s.usable_until_ms(&P), Some(4_201_000));
    }

    #[test]
    fn background_refresh_before_expiry_with_lease() {
        let mut s = fetched(0);
        assert!(!s.due_for_refresh(&P, 539_999));
        assert!(s.due_for_refresh(&P, 540_000), "at 90% of cache_duration");
        s.begin_fetch(&P, 540_000);
        assert!(
            !s.due_for_refresh(&P, 541_000),
            "another worker holds the lease"
        );
        assert!(
            s.due_for_refresh(&P, 546_000),
            "lease void after timeout + margin"
        );
        assert!(
            JwksState::default().due_for_refresh(&P, 0),
            "empty state fetches at once"
        );
    }

    #[test]
    fn failures_back_off_and_keep_keys() {
        let mut s = fetched(0);
        let gen = s.generation;
        s.begin_fetch(&P, 540_000);
        s.on_fetch_failure(&P, 541_000);
        assert_eq!((s.failures, s.retry_at_ms), (1, 542_000));
        assert!(!s.due_for_refresh(&P, 541_500));
        assert!(s.due_for_refresh(&P, 542_000));
        s.on_fetch_failure(&P, 542_000);
        assert_eq!(s.retry_at_ms, 544_000);
        for _ in 0..10 {
            s.on_fetch_failure(&P, 600_000);
        }
        assert_eq!(s.retry_at_ms, 660_000, "capped at backoff_max");
        assert_eq!(
            (s.generation, s.fetched_at_ms),
            (gen, Some(0)),
            "last good keys stay"
        );
        assert_eq!(s.freshness(&P, 700_000), Freshness::Stale);
        s.on_fetch_success(700_000);
        assert_eq!((s.failures, s.retry_at_ms, s.generation), (0, 0, gen + 1));
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let mut s = fetched(0);
        assert_eq!(s.request_keys(&P, 10_000), KeyRequest::Fetch);
        assert_eq!(
            s.request_keys(&P, 10_001),
            KeyRequest::Wait,
            "in flight: wait for it"
        );
        s.on_fetch_success(10_500);
        assert_eq!(s.request_keys(&P, 11_000), KeyRequest::Refused);
        assert_eq!(s.request_keys(&P, 39_999), KeyRequest::Refused);
        assert_eq!(s.request_keys(&P, 40_000), KeyRequest::Fetch);
        s.on_fetch_failure(&P, 40_100);
        assert_eq!(s.request_keys(&P, 40_200), KeyRequest::Refused);
    }

    #[test]
    fn no_keys_fetches_unless_backing_off() {
        let mut s = JwksState::default();
        assert_eq!(s.request_keys(&P, 0), KeyRequest::Fetch);
        assert_eq!(s.request_keys(&P, 1), KeyRequest::Wait);
        s.on_fetch_failure(&P, 100);
        assert_eq!(s.request_keys(&P, 500), KeyRequest::Refused);
        assert_eq!(s.request_keys(&P, 1_100), KeyRequest::Fetch);
    }

    #[test]
    fn shared_data_roundtrip() {
        let s = fetched(42);
        let bytes = encode(&s, br#"{"keys":[]}"#);
        let (back, body) = decode(&bytes).unwrap();
        assert_eq!((back, body), (s, &br#"{"keys":[]}"#[..]));
        assert!(decode(b"garbage").is_none());
        assert!(
            decode(b"{\"x\":1}\n{}").is_none(),
            "unknown layout reads as no state"
        );
    }
}
