//! Per-call counters of the gRPC APIs: ShouldRateLimit calls, and the QuotaLease API's calls,
//! tokens granted and returned, and calls that granted nothing. Labelled by domain (a domain
//! the config does not define is counted as [`UNKNOWN_DOMAIN`], so callers cannot grow the
//! series without bound) and, for leases, by the answer's mode.

use crate::config::Config;
use crate::limiter::LeaseMode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The `domain` label of calls for a domain the config does not define.
pub const UNKNOWN_DOMAIN: &str = "_unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabels {
    pub domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    pub domain: String,
    /// `unlimited`, `leased` or `exact`.
    pub mode: &'static str,
}

#[derive(Default)]
pub(super) struct CallMetrics {
    should_rate_limit: Family<DomainLabels, Counter>,
    lease_calls: Family<LeaseLabels, Counter>,
    granted: Family<LeaseLabels, Counter>,
    zero_grants: Family<LeaseLabels, Counter>,
    return_calls: Family<DomainLabels, Counter>,
    returned: Family<DomainLabels, Counter>,
    rlqs_reports: Family<DomainLabels, Counter>,
}

impl CallMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "should_rate_limit_requests",
            "ShouldRateLimit calls, by domain",
            self.should_rate_limit.clone(),
        );
        registry.register(
            "lease_requests",
            "QuotaLease Lease calls, by domain and the answer's mode (unlimited, leased, exact)",
            self.lease_calls.clone(),
        );
        registry.register(
            "lease_tokens_granted",
            "Tokens granted by Lease calls, by domain and mode",
            self.granted.clone(),
        );
        registry.register(
            "lease_zero_grants",
            "Lease calls of a limited descriptor set that granted nothing (a bucket was empty)",
            self.zero_grants.clone(),
        );
        registry.register(
            "lease_return_requests",
            "QuotaLease Return calls, by domain",
            self.return_calls.clone(),
        );
        registry.register(
            "lease_tokens_returned",
            "Tokens given back to buckets by Return calls, by domain",
            self.returned.clone(),
        );
        registry.register(
            "rlqs_usage_reports",
            "RLQS usage reports received (each leases for its buckets), by domain",
            self.rlqs_reports.clone(),
        );
    }

    pub(super) fn should_rate_limit(&self, domain: String) {
        self.should_rate_limit
            .get_or_create(&DomainLabels { domain })
            .inc();
    }

    pub(super) fn lease(&self, domain: String, mode: LeaseMode, granted: u64) {
        let labels = LeaseLabels {
            domain,
            mode: mode.name(),
        };
        self.lease_calls.get_or_create(&labels).inc();
        self.granted.get_or_create(&labels).inc_by(granted);
        if granted == 0 && mode != LeaseMode::Unlimited {
            self.zero_grants.get_or_create(&labels).inc();
        }
    }

    pub(super) fn rlqs_report(&self, domain: String) {
        self.rlqs_reports
            .get_or_create(&DomainLabels { domain })
            .inc();
    }

    pub(super) fn give_back(&self, domain: String, returned: u64) {
        let labels = DomainLabels { domain };
        self.return_calls.get_or_create(&labels).inc();
        self.returned.get_or_create(&labels).inc_by(returned);
    }
}

/// The `domain` label for a call: the domain if the config defines it.
pub fn domain_label(config: &Config, domain: &str) -> String {
    if config.domain(domain).is_some() {
        domain.to_owned()
    } else {
        UNKNOWN_DOMAIN.to_owned()
    }
}
