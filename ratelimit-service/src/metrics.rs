//! Prometheus metrics: per domain and descriptor path counters, Redis latency and errors,
//! config reloads, token revocations and refused revocation requests, and per-call counters of
//! ShouldRateLimit and the QuotaLease API ([`calls`]). Counters of configured limits are
//! resolved once per config load.

mod calls;

pub use calls::{domain_label, DomainLabels, LeaseLabels, UNKNOWN_DOMAIN};

use crate::config::Config;
use crate::limiter::{LeaseMode, Observation};
use calls::CallMetrics;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DescriptorLabels {
    pub domain: String,
    pub descriptor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListLabels {
    /// `full` or `incremental`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `http` or `grpc`.
    pub transport: &'static str,
    /// `disabled` (no token configured), `missing`, `malformed` or `wrong` (the credential).
    pub reason: &'static str,
}

/// The counters of one configured limit, resolved when the config is loaded.
#[derive(Clone, Default)]
pub struct LimitCounters {
    hits: Counter,
    over_limit: Counter,
    near_limit: Counter,
    shadow_over_limit: Counter,
    local_cache_hits: Counter,
}

pub struct Metrics {
    registry: Registry,
    hits: Family<DescriptorLabels, Counter>,
    over_limit: Family<DescriptorLabels, Counter>,
    near_limit: Family<DescriptorLabels, Counter>,
    shadow_over_limit: Family<DescriptorLabels, Counter>,
    local_cache_hits: Family<DescriptorLabels, Counter>,
    redis_latency: Histogram,
    redis_errors: Family<ErrorLabels, Counter>,
    config_reloads: Family<ReloadLabels, Counter>,
    revocations_added: Counter,
    revocation_lists: Family<ListLabels, Counter>,
    revocations_live: Gauge,
    revocation_refusals: Family<RefusalLabels, Counter>,
    calls: CallMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ratelimit");
        let hits = Family::default();
        let over_limit = Family::default();
        let near_limit = Family::default();
        let shadow_over_limit = Family::default();
        let local_cache_hits = Family::default();
        let redis_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let redis_errors = Family::default();
        let config_reloads = Family::default();
        let revocations_added = Counter::default();
        let revocation_lists = Family::default();
        let revocations_live = Gauge::default();
        let revocation_refusals = Family::default();
        registry.register("hits", "Hits counted per descriptor", hits.clone());
        registry.register(
            "over_limit",
            "Hits rejected per descriptor",
            over_limit.clone(),
        );
        registry.register(
            "near_limit",
            "Hits admitted with 80% or more of the limit used",
            near_limit.clone(),
        );
        registry.register(
            "shadow_mode_over_limit",
            "Hits over limit but admitted because of shadow_mode",
            shadow_over_limit.clone(),
        );
        registry.register(
            "local_cache_hits",
            "Hits rejected from the local over-limit cache without calling Redis",
            local_cache_hits.clone(),
        );
        registry.register(
            "redis_latency_seconds",
            "Latency of the rate limit script call",
            redis_latency.clone(),
        );
        registry.register("redis_errors", "Failed Redis calls", redis_errors.clone());
        registry.register(
            "config_reloads",
            "Config reload attempts",
            config_reloads.clone(),
        );
        registry.register(
            "revocations_added",
            "Revocations that added an entry or extended its expiry",
            revocations_added.clone(),
        );
        registry.register(
            "revocation_list_requests",
            "ListRevocations answers, by kind (full or incremental)",
            revocation_lists.clone(),
        );
        registry.register(
            "revocations_live",
            "Live (unexpired) revocation entries, as of the last revocation call",
            revocations_live.clone(),
        );
        registry.register(
            "revocation_requests_refused",
            "Revocation API requests refused for their credential, by transport (http, grpc) \
             and reason (disabled, missing, malformed, wrong)",
            revocation_refusals.clone(),
        );
        let calls = CallMetrics::default();
        calls.register(&mut registry);
        Metrics {
            registry,
            hits,
            over_limit,
            near_limit,
            shadow_over_limit,
            local_cache_hits,
            redis_latency,
            redis_errors,
            config_reloads,
            revocations_added,
            revocation_lists,
            revocations_live,
            revocation_refusals,
            calls,
        }
    }

    /// A ShouldRateLimit call (`domain`: see [`domain_label`]).
    pub fn should_rate_limit_call(&self, domain: String) {
        self.calls.should_rate_limit(domain);
    }

    /// A Lease call answered with `mode`, granting `granted` tokens.
    pub fn lease_call(&self, domain: String, mode: LeaseMode, granted: u64) {
        self.calls.lease(domain, mode, granted);
    }

    /// An RLQS usage report (its buckets' leases count as Lease calls).
    pub fn rlqs_report(&self, domain: String) {
        self.calls.rlqs_report(domain);
    }

    /// A Return call that gave `returned` tokens back.
    pub fn return_call(&self, domain: String, returned: u64) {
        self.calls.give_back(domain, returned);
    }

    fn counters(&self, labels: &DescriptorLabels) -> LimitCounters {
        LimitCounters {
            hits: self.hits.get_or_create(labels).clone(),
            over_limit: self.over_limit.get_or_create(labels).clone(),
            near_limit: self.near_limit.get_or_create(labels).clone(),
            shadow_over_limit: self.shadow_over_limit.get_or_create(labels).clone(),
            local_cache_hits: self.local_cache_hits.get_or_create(labels).clone(),
        }
    }

    /// Resolves the counters of every configured limit, indexed by `Limit::id`.
    pub fn bind(&self, config: &Config) -> Vec<LimitCounters> {
        let mut bound = vec![LimitCounters::default(); config.limit_count()];
        for (domain, limit) in config.limits() {
            if let Some(slot) = bound.get_mut(limit.id) {
                *slot = self.counters(&DescriptorLabels {
                    domain: domain.name.clone(),
                    descriptor: limit.stats_path.clone(),
                });
            }
        }
        bound
    }

    pub fn record(&self, bound: &[LimitCounters], domain: &str, observations: &[Observation]) {
        for o in observations {
            let resolved;
            let counters = match (&o.label, o.limit_id.and_then(|id| bound.get(id))) {
                (None, Some(c)) => c,
                (label, _) => {
                    resolved = self.counters(&DescriptorLabels {
                        domain: domain.to_owned(),
                        descriptor: label.clone().unwrap_or_default(),
                    });
                    &resolved
                }
            };
            counters.hits.inc_by(o.hits);
            if o.over_limit {
                counters.over_limit.inc_by(o.hits.max(1));
            }
            if o.near_limit {
                counters.near_limit.inc_by(o.hits);
            }
            if o.shadow_over_limit {
                counters.shadow_over_limit.inc_by(o.hits.max(1));
            }
            if o.cache_hit {
                counters.local_cache_hits.inc();
            }
        }
    }

    pub fn observe_redis_latency(&self, seconds: f64) {
        self.redis_latency.observe(seconds);
    }

    pub fn redis_error(&self, transient: bool) {
        let kind = if transient { "transient" } else { "permanent" };
        self.redis_errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// A revocation call finished: `added` if it changed the store; `live` entries remain.
    pub fn revocation(&self, added: bool, live: u64) {
        if added {
            self.revocations_added.inc();
        }
        self.set_revocations_live(live);
    }

    /// A list was answered.
    pub fn revocation_list(&self, full: bool, live: u64) {
        let kind = if full { "full" } else { "incremental" };
        self.revocation_lists
            .get_or_create(&ListLabels { kind })
            .inc();
        self.set_revocations_live(live);
    }

    /// A revocation API request was refused (see `server::access`).
    pub fn revocation_refused(&self, transport: &'static str, reason: &'static str) {
        self.revocation_refusals
            .get_or_create(&RefusalLabels { transport, reason })
            .inc();
    }

    /// Exposes the refusal series of `transport` and `reason` at 0 until the first refusal.
    pub fn revocation_refusals_init(&self, transport: &'static str, reason: &'static str) {
        // The series exists from here on; the returned handle is not needed.
        let _counter = self
            .revocation_refusals
            .get_or_create_owned(&RefusalLabels { transport, reason });
    }

    fn set_revocations_live(&self, live: u64) {
        self.revocations_live
            .set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    /// Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
