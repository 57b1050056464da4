//! The metrics the ratelimit stage defines (`<filter>.<name>`; Envoy: `wasmcustom.ratelimit.*`).

use filter_core::host::{BatchedCounter, Counter};
use filter_core::Host;

/// Requests admitted against a held token (or with no limit applying).
pub const ADMITTED: &str = "ratelimit.admitted";
/// Requests answered 429.
pub const REFUSED: &str = "ratelimit.refused";
/// Requests that waited for a lease.
pub const WAITED: &str = "ratelimit.waited";
/// Requests decided by the failure mode (service unreachable, no token in time).
pub const FAILURE_MODE: &str = "ratelimit.failure_mode";
/// Of those, requests whose wait reached `timeout_ms`.
pub const TIMEOUTS: &str = "ratelimit.timeouts";
/// Lease calls sent.
pub const LEASES: &str = "ratelimit.leases";
/// Lease calls that failed (service or store unreachable, bad answer).
pub const LEASE_FAILURES: &str = "ratelimit.lease_failures";
/// Tokens granted by the service.
pub const TOKENS_GRANTED: &str = "ratelimit.tokens_granted";
/// Granted tokens that could not be added to their pool (never spent: under-admission).
pub const TOKENS_LOST: &str = "ratelimit.tokens_lost";
/// Live pools whose slot a new pool took (their tokens dropped: under-admission).
pub const POOLS_EVICTED: &str = "ratelimit.pools_evicted";

/// The stage's counters; the per-request ones are batched.
pub struct Metrics<H: Host> {
    pub admitted: BatchedCounter<H>,
    pub refused: Counter<H>,
    pub waited: Counter<H>,
    pub failures: Counter<H>,
    pub timeouts: Counter<H>,
    pub leases: Counter<H>,
    pub lease_failures: Counter<H>,
    pub granted: Counter<H>,
    pub tokens_lost: Counter<H>,
    pub evicted: Counter<H>,
}

impl<H: Host> Metrics<H> {
    pub fn define(host: &H) -> Self {
        let c = |name| Counter::define(host, name);
        Metrics {
            admitted: BatchedCounter::define(host, ADMITTED),
            refused: c(REFUSED),
            waited: c(WAITED),
            failures: c(FAILURE_MODE),
            timeouts: c(TIMEOUTS),
            leases: c(LEASES),
            lease_failures: c(LEASE_FAILURES),
            granted: c(TOKENS_GRANTED),
            tokens_lost: c(TOKENS_LOST),
            evicted: c(POOLS_EVICTED),
        }
    }

    pub fn flush(&self) {
        self.admitted.flush();
    }
}
