//! The host side of tenant_cache_key (wasm32 only): the counters, batched in the VM and handed
//! to Envoy on the root tick, the JSON reply for a request no source identifies, and the stream
//! caps on proxy-wasm shared data ([`TenantStreams`]). Shared by the plugin (`filter`) and by
//! bundles that run this filter as one stage of several.
//!
//! Counters are batched: a request bumps plain in-VM cells and the root context hands the sums
//! to Envoy once a second (and when the VM stops), because each `increment_metric` is a host
//! call costing about a microsecond — as much as the filter's own work on a request.

use crate::streams::{
    RETRY_AFTER_SECONDS, STREAMS_UNAVAILABLE_ERROR, STREAMS_UNAVAILABLE_MESSAGE,
    TOO_MANY_STREAMS_ERROR,
};
use crate::{
    Admission, Limit, Outcome, RequestPlan, ResponseEdits, SourceKind, StreamClaim, StreamLimits,
    StreamTracker, INVALID_API_KEY_ERROR, INVALID_API_KEY_MESSAGE, UNRESOLVED_ERROR,
    UNRESOLVED_MESSAGE,
};
use filter_core::wasm::{send_json_error, send_json_error_with, Counter, Gauge, SharedData};
use proxy_wasm::hostcalls;
use std::cell::{Cell, RefCell};
use std::time::{Duration, UNIX_EPOCH};

/// The name the plugin logs under.
pub const PLUGIN: &str = "tenant_cache_key";
/// How often the batched counters reach the host ([`TenantMetrics::flush`]).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The counters, in the order of [`Metric`].
const METRIC_NAMES: [&str; 20] = [
    "tenant_resolved_claim",
    "tenant_resolved_api_key",
    "tenant_resolved_host",
    "tenant_resolved_path",
    "tenant_resolved_default",
    "tenant_unresolved",
    "tenant_rejected",
    "tenant_forged_header_removed",
    "tenant_vary_added",
    "tenant_private_set",
    "tenant_ttl_set",
    "tenant_cache_bypassed",
    "tenant_invalid_api_key",
    "tenant_identity_removed",
    "tenant_streams_admitted",
    "tenant_streams_released",
    "tenant_streams_refused_consumer",
    "tenant_streams_refused_tenant",
    "tenant_streams_unavailable",
    "tenant_streams_expired",
];
/// Streams in flight, over every worker (each VM adds its admissions and releases).
const ACTIVE_STREAMS: &str = "tenant_streams_active";

#[derive(Clone, Copy)]
enum Metric {
    Unresolved = 5,
    Rejected = 6,
    ForgedRemoved = 7,
    VaryAdded = 8,
    PrivateSet = 9,
    TtlSet = 10,
    CacheBypassed = 11,
    InvalidApiKey = 12,
    IdentityRemoved = 13,
    StreamsAdmitted = 14,
    StreamsReleased = 15,
    StreamsRefusedConsumer = 16,
    StreamsRefusedTenant = 17,
    StreamsUnavailable = 18,
    StreamsExpired = 19,
}

fn resolved_metric(kind: SourceKind) -> usize {
    // SourceKind::ALL is in the same order as the first five names.
    SourceKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The filter's counters with the per-VM counts not yet handed to Envoy.
pub struct TenantMetrics {
    counters: Vec<Counter>,
    pending: [Cell<i64>; METRIC_NAMES.len()],
    active: Gauge,
    active_pending: Cell<i64>,
}

/// How a request leaves the tenant stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    Continue,
    /// No tenant and the configuration rejects, or an API key that does not verify: the JSON
    /// error was sent as a local reply.
    Rejected,
}

impl TenantMetrics {
    /// Defines the counters (once per VM, from the root context).
    pub fn define() -> Self {
        TenantMetrics {
            counters: METRIC_NAMES.iter().map(|n| Counter::define(n)).collect(),
            pending: Default::default(),
            active: Gauge::define(ACTIVE_STREAMS),
            active_pending: Cell::new(0),
        }
    }

    fn bump(&self, metric: usize) {
        self.add(metric, 1);
    }

    fn add(&self, metric: usize, n: i64) {
        if let Some(cell) = self.pending.get(metric) {
            cell.set(cell.get().saturating_add(n));
        }
    }

    /// Hands the counts to the host (the root tick, and when the VM stops).
    pub fn flush(&self) {
        for (cell, counter) in self.pending.iter().zip(&self.counters) {
            let n = cell.replace(0);
            if n > 0 {
                counter.add(n);
            }
        }
        self.active.add(self.active_pending.replace(0));
    }

    /// Counts a stream admission decision.
    pub fn stream(&self, admission: Admission) {
        let metric = match admission {
            Admission::Admitted => {
                self.active_pending.set(self.active_pending.get() + 1);
                Metric::StreamsAdmitted
            }
            Admission::Refused {
                limit: Limit::Consumer,
                ..
            } => Metric::StreamsRefusedConsumer,
            Admission::Refused {
                limit: Limit::Tenant,
                ..
            } => Metric::StreamsRefusedTenant,
            Admission::Unavailable => Metric::StreamsUnavailable,
        };
        self.bump(metric as usize);
    }

    /// Counts the end of an admitted stream.
    pub fn stream_released(&self) {
        self.active_pending.set(self.active_pending.get() - 1);
        self.bump(Metric::StreamsReleased as usize);
    }

    /// Counts shared-data stream entries removed because their holder stopped renewing them.
    pub fn streams_expired(&self, n: u64) {
        self.add(
            Metric::StreamsExpired as usize,
            i64::try_from(n).unwrap_or(i64::MAX),
        );
    }

    /// Counts a request-phase plan (its edits are the caller's to write) and sends the
    /// rejection when the plan rejects; `request_id` is echoed in the error body.
    pub fn finish_request(&self, plan: &RequestPlan<'_>, request_id: Option<&str>) -> RequestEnd {
        if plan.forged {
            self.bump(Metric::ForgedRemoved as usize);
        }
        if plan.cache_bypassed {
            self.bump(Metric::CacheBypassed as usize);
        }
        if plan.identity_removed {
            self.bump(Metric::IdentityRemoved as usize);
        }
        match plan.outcome {
            Outcome::Resolved(kind) => self.bump(resolved_metric(kind)),
            Outcome::Anonymous => self.bump(Metric::Unresolved as usize),
            Outcome::Reject { status } => {
                self.bump(Metric::Unresolved as usize);
                self.bump(Metric::Rejected as usize);
                send_json_error(
                    status,
                    UNRESOLVED_ERROR,
                    UNRESOLVED_MESSAGE,
                    request_id,
                    &[],
                );
                return RequestEnd::Rejected;
            }
            Outcome::InvalidApiKey => {
                self.bump(Metric::InvalidApiKey as usize);
                send_json_error(
                    401,
                    INVALID_API_KEY_ERROR,
                    INVALID_API_KEY_MESSAGE,
                    request_id,
                    &[],
                );
                return RequestEnd::Rejected;
            }
            Outcome::NotResolving => {}
        }
        RequestEnd::Continue
    }

    /// Counts the response-phase edits (written by the caller).
    pub fn response(&self, edits: &ResponseEdits) {
        if edits.vary.is_some() {
            self.bump(Metric::VaryAdded as usize);
        }
        if edits.private_set {
            self.bump(Metric::PrivateSet as usize);
        }
        if edits.ttl_set {
            self.bump(Metric::TtlSet as usize);
        }
    }
}

/// The host clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A random id for this plugin instance's stream entries (context ids repeat across VMs).
fn random_instance() -> u32 {
    let mut b = [0u8; 4];
    match getrandom::getrandom(&mut b) {
        Ok(()) => u32::from_le_bytes(b),
        // Only the tie between two workers' identical context ids depends on it.
        Err(_) => (now_ms() as u32).rotate_left(13) ^ 0x9e37_79b9,
    }
}

/// The stream caps of one plugin instance (root context): the counts on shared data, the
/// refusal replies. The HTTP contexts admit and end their streams through it; the root ticks it.
pub struct TenantStreams {
    tracker: RefCell<StreamTracker>,
}

impl TenantStreams {
    pub fn new(limits: &StreamLimits) -> Self {
        TenantStreams {
            tracker: RefCell::new(StreamTracker::new(limits.clone(), random_instance())),
        }
    }

    /// Counts the stream request `context_id` opens; when a cap refuses it (429) or the count
    /// cannot be written (503), sends the JSON refusal and returns [`RequestEnd::Rejected`].
    pub fn admit(
        &self,
        context_id: u32,
        claim: &StreamClaim,
        request_id: Option<&str>,
        metrics: &TenantMetrics,
    ) -> RequestEnd {
        // The borrow ends before the reply: a local reply may re-enter the VM.
        let admission = self
            .tracker
            .borrow_mut()
            .admit(&SharedData, context_id, claim, now_ms());
        metrics.stream(admission);
        match admission {
            Admission::Admitted => return RequestEnd::Continue,
            Admission::Refused { limit, max } => send_json_error_with(
                429,
                TOO_MANY_STREAMS_ERROR,
                limit.message(),
                &[("limit", limit.name().into()), ("max", max.into())],
                request_id,
                &[("retry-after", RETRY_AFTER_SECONDS)],
            ),
            Admission::Unavailable => send_json_error(
                503,
                STREAMS_UNAVAILABLE_ERROR,
                STREAMS_UNAVAILABLE_MESSAGE,
                request_id,
                &[("retry-after", "1")],
            ),
        }
        RequestEnd::Rejected
    }

    /// Request `context_id` ended (`on_done` / `on_log`, whichever comes first, for every
    /// request): releases its slot if it holds one, exactly once.
    pub fn end(&self, context_id: u32, metrics: &TenantMetrics) {
        let released = self
            .tracker
            .borrow_mut()
            .end(&SharedData, context_id, now_ms());
        if released {
            metrics.stream_released();
        }
    }

    /// The root tick: retried releases and lease renewal.
    pub fn tick(&self, metrics: &TenantMetrics) {
        let mut tracker = self.tracker.borrow_mut();
        tracker.tick(&SharedData, now_ms());
        metrics.streams_expired(tracker.take_expired());
    }
}
