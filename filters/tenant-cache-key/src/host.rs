//! The host side of tenant_cache_key (wasm32 only): the counters, batched in the VM and handed
//! to Envoy on the root tick, and the JSON reply for a request no source identifies. Shared by
//! the plugin (`filter`) and by bundles that run this filter as one stage of several.
//!
//! Counters are batched: a request bumps plain in-VM cells and the root context hands the sums
//! to Envoy once a second (and when the VM stops), because each `increment_metric` is a host
//! call costing about a microsecond — as much as the filter's own work on a request.

use crate::{
    Outcome, RequestPlan, ResponseEdits, SourceKind, INVALID_API_KEY_ERROR,
    INVALID_API_KEY_MESSAGE, UNRESOLVED_ERROR, UNRESOLVED_MESSAGE,
};
use filter_core::wasm::{send_json_error, Counter};
use std::cell::Cell;
use std::time::Duration;

/// The name the plugin logs under.
pub const PLUGIN: &str = "tenant_cache_key";
/// How often the batched counters reach the host ([`TenantMetrics::flush`]).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The counters, in the order of [`Metric`].
const METRIC_NAMES: [&str; 14] = [
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
];

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
}

fn resolved_metric(kind: SourceKind) -> usize {
    // SourceKind::ALL is in the same order as the first five names.
    SourceKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The filter's counters with the per-VM counts not yet handed to Envoy.
pub struct TenantMetrics {
    counters: Vec<Counter>,
    pending: [Cell<i64>; METRIC_NAMES.len()],
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
        }
    }

    fn bump(&self, metric: usize) {
        if let Some(cell) = self.pending.get(metric) {
            cell.set(cell.get() + 1);
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
