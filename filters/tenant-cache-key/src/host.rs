//! The host side of tenant_cache_key, generic over [`Host`]: the counters (batched in the VM
//! and handed to Envoy on the plugin's flush), the JSON replies for a request no source
//! identifies or whose API key does not verify, and the stream caps on shared data
//! ([`TenantStreams`]). Shared by the plugin ([`crate::plugin`]) and by bundles that run this
//! filter as one stage of several; tested natively against `filter_core::testing::FakeHost`.
//!
//! Counters are batched: each `increment_metric` is a host call costing about a microsecond —
//! as much as the filter's own work on a request.

use crate::metrics;
use crate::sources::KeyRefusal;
use crate::streams::{
    RETRY_AFTER_SECONDS, STREAMS_UNAVAILABLE_ERROR, STREAMS_UNAVAILABLE_MESSAGE,
    TOO_MANY_STREAMS_ERROR,
};
use crate::{
    Admission, Limit, Outcome, RequestPlan, ResponseEdits, SourceKind, StreamClaim, StreamLimits,
    StreamTracker, INVALID_API_KEY_ERROR, INVALID_API_KEY_MESSAGE, UNRESOLVED_ERROR,
    UNRESOLVED_MESSAGE,
};
use crate::{OnRoute, TenantPolicy};
use filter_core::audit;
use filter_core::host::{random_u64, BatchedCounter, Level};
use filter_core::route::{Bound, Choice, Refusal, RouteFacts};
use filter_core::Host;
use std::cell::{Cell, RefCell};

/// The name the plugin logs under.
pub const PLUGIN: &str = "tenant_cache_key";

/// The filter's counters ([`crate::metrics`]), with the per-VM counts not yet handed to Envoy.
pub struct TenantMetrics<H: Host> {
    /// By [`SourceKind`], in the order of `SourceKind::ALL`.
    resolved: [BatchedCounter<H>; 6],
    unresolved: BatchedCounter<H>,
    rejected: BatchedCounter<H>,
    forged_removed: BatchedCounter<H>,
    vary_added: BatchedCounter<H>,
    private_set: BatchedCounter<H>,
    ttl_set: BatchedCounter<H>,
    cache_bypassed: BatchedCounter<H>,
    invalid_api_key: BatchedCounter<H>,
    expired_api_key: BatchedCounter<H>,
    identity_removed: BatchedCounter<H>,
    streams_admitted: BatchedCounter<H>,
    streams_released: BatchedCounter<H>,
    streams_refused_consumer: BatchedCounter<H>,
    streams_refused_tenant: BatchedCounter<H>,
    streams_unavailable: BatchedCounter<H>,
    streams_expired: BatchedCounter<H>,
    active: filter_core::host::Gauge<H>,
    active_pending: Cell<i64>,
}

/// How a request leaves the tenant stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    Continue,
    /// No tenant and the configuration rejects, or an API key that does not verify, or a
    /// stream cap: the JSON error was sent as a local reply.
    Rejected,
}

impl<H: Host> TenantMetrics<H> {
    /// Defines the counters (once per VM, from the root context).
    pub fn define(host: &H) -> Self {
        let c = |name: &str| BatchedCounter::define(host, name);
        TenantMetrics {
            resolved: SourceKind::ALL.map(|k| c(&metrics::resolved(k))),
            unresolved: c(metrics::UNRESOLVED),
            rejected: c(metrics::REJECTED),
            forged_removed: c(metrics::FORGED_HEADER_REMOVED),
            vary_added: c(metrics::VARY_ADDED),
            private_set: c(metrics::PRIVATE_SET),
            ttl_set: c(metrics::TTL_SET),
            cache_bypassed: c(metrics::CACHE_BYPASSED),
            invalid_api_key: c(metrics::INVALID_API_KEY),
            expired_api_key: c(metrics::EXPIRED_API_KEY),
            identity_removed: c(metrics::IDENTITY_REMOVED),
            streams_admitted: c(metrics::STREAMS_ADMITTED),
            streams_released: c(metrics::STREAMS_RELEASED),
            streams_refused_consumer: c(metrics::STREAMS_REFUSED_CONSUMER),
            streams_refused_tenant: c(metrics::STREAMS_REFUSED_TENANT),
            streams_unavailable: c(metrics::STREAMS_UNAVAILABLE),
            streams_expired: c(metrics::STREAMS_EXPIRED),
            active: filter_core::host::Gauge::define(host, metrics::STREAMS_ACTIVE),
            active_pending: Cell::new(0),
        }
    }

    fn all(&self) -> impl Iterator<Item = &BatchedCounter<H>> {
        self.resolved.iter().chain([
            &self.unresolved,
            &self.rejected,
            &self.forged_removed,
            &self.vary_added,
            &self.private_set,
            &self.ttl_set,
            &self.cache_bypassed,
            &self.invalid_api_key,
            &self.expired_api_key,
            &self.identity_removed,
            &self.streams_admitted,
            &self.streams_released,
            &self.streams_refused_consumer,
            &self.streams_refused_tenant,
            &self.streams_unavailable,
            &self.streams_expired,
        ])
    }

    /// Hands the counts to the host (the plugin's flush).
    pub fn flush(&self) {
        for counter in self.all() {
            counter.flush();
        }
        self.active.add(self.active_pending.replace(0));
    }

    fn resolved(&self, kind: SourceKind) -> Option<&BatchedCounter<H>> {
        let i = SourceKind::ALL.iter().position(|k| *k == kind)?;
        self.resolved.get(i)
    }

    /// Counts a stream admission decision.
    pub fn stream(&self, admission: Admission) {
        let counter = match admission {
            Admission::Admitted => {
                self.active_pending.set(self.active_pending.get() + 1);
                &self.streams_admitted
            }
            Admission::Refused {
                limit: Limit::Consumer,
                ..
            } => &self.streams_refused_consumer,
            Admission::Refused {
                limit: Limit::Tenant,
                ..
            } => &self.streams_refused_tenant,
            Admission::Unavailable => &self.streams_unavailable,
        };
        counter.inc();
    }

    /// Counts the end of an admitted stream.
    pub fn stream_released(&self) {
        self.active_pending.set(self.active_pending.get() - 1);
        self.streams_released.inc();
    }

    /// Counts shared-data stream entries removed because their holder stopped renewing them.
    pub fn streams_expired(&self, n: u64) {
        self.streams_expired
            .add(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts a request-phase plan (its edits are the caller's to write) and sends the
    /// rejection when the plan rejects; `request_id` is echoed in the error body.
    pub fn finish_request(
        &self,
        host: &H,
        plan: &RequestPlan<'_>,
        request_id: Option<&str>,
    ) -> RequestEnd {
        for (happened, counter) in [
            (plan.forged, &self.forged_removed),
            (plan.cache_bypassed, &self.cache_bypassed),
            (plan.identity_removed, &self.identity_removed),
        ] {
            if happened {
                counter.inc();
            }
        }
        let (status, error, message, reason) = match plan.outcome {
            Outcome::Resolved(kind) => {
                if let Some(c) = self.resolved(kind) {
                    c.inc();
                }
                return RequestEnd::Continue;
            }
            Outcome::Anonymous => {
                self.unresolved.inc();
                return RequestEnd::Continue;
            }
            Outcome::NotResolving | Outcome::Exempt => return RequestEnd::Continue,
            Outcome::Reject { status } => {
                self.unresolved.inc();
                self.rejected.inc();
                let error = UNRESOLVED_ERROR;
                (status, error, UNRESOLVED_MESSAGE, error)
            }
            Outcome::InvalidApiKey(why) => {
                self.invalid_api_key.inc();
                if why == KeyRefusal::Expired {
                    self.expired_api_key.inc();
                }
                let message = INVALID_API_KEY_MESSAGE;
                (401, INVALID_API_KEY_ERROR, message, why.reason())
            }
        };
        audit::record(host, PLUGIN, reason, None);
        host.send_json_error(status, error, message, request_id, &[]);
        RequestEnd::Rejected
    }

    /// Answers a request refused for its route (it names no tenant policy, or an undefined
    /// one) and counts it.
    pub fn refuse_route(&self, host: &H, refusal: &Refusal, request_id: Option<&str>) {
        self.rejected.inc();
        refusal.send(host, request_id);
    }

    /// Counts the response-phase edits (written by the caller).
    pub fn response(&self, edits: &ResponseEdits) {
        for (happened, counter) in [
            (edits.vary.is_some(), &self.vary_added),
            (edits.private_set, &self.private_set),
            (edits.ttl_set, &self.ttl_set),
        ] {
            if happened {
                counter.inc();
            }
        }
    }
}

/// The stream caps of one plugin instance (root context): the counts on shared data, the
/// refusal replies. The HTTP contexts admit and end their streams through it; the root ticks it.
pub struct TenantStreams<H: Host> {
    host: H,
    tracker: RefCell<StreamTracker>,
}

impl<H: Host> TenantStreams<H> {
    /// `instance` tells this plugin instance's shared-data entries from other workers' (context
    /// ids repeat across VMs): a random id.
    pub fn new(host: &H, limits: &StreamLimits) -> Self {
        // Only the tie between two workers' identical context ids depends on the randomness.
        let instance = random_u64(host) as u32;
        TenantStreams {
            host: host.clone(),
            tracker: RefCell::new(StreamTracker::new(limits.clone(), instance)),
        }
    }

    /// Counts the stream request `context_id` opens; when a cap refuses it (429) or the count
    /// cannot be written (503), sends the JSON refusal and returns [`RequestEnd::Rejected`].
    pub fn admit(
        &self,
        context_id: u32,
        claim: &StreamClaim,
        request_id: Option<&str>,
        metrics: &TenantMetrics<H>,
    ) -> RequestEnd {
        // The borrow ends before the reply: a local reply may re-enter the VM.
        let now = self.host.now_ms();
        let admission = self
            .tracker
            .borrow_mut()
            .admit(&self.host, context_id, claim, now);
        metrics.stream(admission);
        match admission {
            Admission::Admitted => return RequestEnd::Continue,
            Admission::Refused { limit, max } => {
                let (host, reason) = (&self.host, TOO_MANY_STREAMS_ERROR);
                audit::record(host, PLUGIN, reason, Some(limit.name()));
                host.send_json_error_with(
                    429,
                    reason,
                    limit.message(),
                    &[("limit", limit.name().into()), ("max", max.into())],
                    request_id,
                    &[("retry-after", RETRY_AFTER_SECONDS)],
                )
            }
            Admission::Unavailable => {
                audit::record(&self.host, PLUGIN, STREAMS_UNAVAILABLE_ERROR, None);
                self.host.send_json_error(
                    503,
                    STREAMS_UNAVAILABLE_ERROR,
                    STREAMS_UNAVAILABLE_MESSAGE,
                    request_id,
                    &[("retry-after", "1")],
                )
            }
        }
        RequestEnd::Rejected
    }

    /// Request `context_id` ended (`on_done` / `on_log`, whichever comes first, for every
    /// request): releases its slot if it holds one, exactly once.
    pub fn end(&self, context_id: u32, metrics: &TenantMetrics<H>) {
        let now = self.host.now_ms();
        let released = self.tracker.borrow_mut().end(&self.host, context_id, now);
        if released {
            metrics.stream_released();
        }
    }

    /// The root tick: retried releases and lease renewal.
    pub fn tick(&self, metrics: &TenantMetrics<H>) {
        let mut tracker = self.tracker.borrow_mut();
        tracker.tick(&self.host, self.host.now_ms());
        metrics.streams_expired(tracker.take_expired());
    }
}

/// What the route Envoy matched asks of `policy` for this request (read as `facts`): its
/// policy, or exempt (it names `none`, or Envoy answers it itself). A resolving stage refuses a
/// route that names no policy (403) or an undefined one (500); a response-only stage gives
/// such a route no lifetime (the request stage refused it already) and logs an undefined name.
pub fn on_route<'p, H: Host>(
    host: &H,
    policy: &'p TenantPolicy,
    facts: &RouteFacts,
) -> Result<OnRoute<'p>, Refusal> {
    let Some(binding) = policy.routes() else {
        return Ok(OnRoute::Matchers);
    };
    let bound = binding.decide(host, facts);
    match &bound {
        Bound::Chosen(Choice::Policy(i)) => {
            return Ok(binding.policy(*i).map_or(OnRoute::Exempt, OnRoute::Policy))
        }
        Bound::Chosen(Choice::Reserved(_)) | Bound::Exempt => return Ok(OnRoute::Exempt),
        Bound::Unbound | Bound::Invalid(_) => {}
    }
    match bound.refusal("tenant") {
        Some(refusal) if policy.stage().resolves() => Err(refusal),
        Some(Refusal {
            log: Some(line), ..
        }) => {
            host.log(Level::Warn, &line);
            Ok(OnRoute::Exempt)
        }
        _ => Ok(OnRoute::Exempt),
    }
}
