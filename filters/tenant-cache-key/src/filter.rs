//! proxy-wasm glue: one header-map read per phase, the planned removals and sets, the JSON reply
//! for a rejected request. Every decision comes from [`TenantPolicy`].
//!
//! Counters are batched: a request bumps plain in-VM cells and the root context hands the sums
//! to Envoy once a second (and when the VM stops), because each `increment_metric` is a host
//! call costing about a microsecond — as much as the filter's own work on a request.

use crate::{
    Outcome, RequestFacts, SourceKind, TenantPolicy, UNRESOLVED_ERROR, UNRESOLVED_MESSAGE,
};
use filter_core::wasm::{log_config_error, read_headers, send_json_error, Counter};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(TenantRoot::default()));
}}

const PLUGIN: &str = "tenant_cache_key";
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The counters, in the order of [`Metric`].
const METRIC_NAMES: [&str; 12] = [
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
}

fn resolved_metric(kind: SourceKind) -> usize {
    // SourceKind::ALL is in the same order as the first five names.
    SourceKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Per-VM counts not yet handed to Envoy.
#[derive(Default)]
struct Pending([Cell<i64>; METRIC_NAMES.len()]);

impl Pending {
    fn bump(&self, index: usize) {
        if let Some(cell) = self.0.get(index) {
            cell.set(cell.get() + 1);
        }
    }

    fn flush(&self, counters: &[Counter]) {
        for (cell, counter) in self.0.iter().zip(counters) {
            let n = cell.replace(0);
            if n > 0 {
                counter.add(n);
            }
        }
    }
}

#[derive(Default)]
struct TenantRoot {
    policy: Option<Rc<TenantPolicy>>,
    counters: Vec<Counter>,
    pending: Rc<Pending>,
}

impl Context for TenantRoot {
    fn on_done(&mut self) -> bool {
        self.pending.flush(&self.counters);
        true
    }
}

impl RootContext for TenantRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match TenantPolicy::new(&config) {
            Ok(policy) => {
                self.policy = Some(Rc::new(policy));
                if self.counters.is_empty() {
                    self.counters = METRIC_NAMES.iter().map(|n| Counter::define(n)).collect();
                }
                self.set_tick_period(FLUSH_EVERY);
                true
            }
            Err(err) => {
                log_config_error(PLUGIN, &err);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.pending.flush(&self.counters);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TenantHttp {
            policy: self.policy.clone(),
            pending: Rc::clone(&self.pending),
            facts: None,
        }))
    }
}

struct TenantHttp {
    /// None when the plugin has no valid configuration (it then does nothing).
    policy: Option<Rc<TenantPolicy>>,
    pending: Rc<Pending>,
    /// Set in the request phase when this instance shapes responses.
    facts: Option<RequestFacts>,
}

impl Context for TenantHttp {}

impl HttpContext for TenantHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else {
            return Action::Continue;
        };
        let headers = read_headers(MapType::HttpRequestHeaders);
        let plan = policy.request_plan(&headers);
        for name in &plan.remove {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
        for (name, value) in &plan.set {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
        }
        if plan.forged {
            self.pending.bump(Metric::ForgedRemoved as usize);
        }
        if plan.cache_bypassed {
            self.pending.bump(Metric::CacheBypassed as usize);
        }
        match plan.outcome {
            Outcome::Resolved(kind) => self.pending.bump(resolved_metric(kind)),
            Outcome::Anonymous => self.pending.bump(Metric::Unresolved as usize),
            Outcome::Reject { status } => {
                self.pending.bump(Metric::Unresolved as usize);
                self.pending.bump(Metric::Rejected as usize);
                send_json_error(
                    status,
                    UNRESOLVED_ERROR,
                    UNRESOLVED_MESSAGE,
                    headers.get("x-request-id"),
                    &[],
                );
                return Action::Pause;
            }
            Outcome::NotResolving => {}
        }
        if policy.stage().shapes_responses() {
            self.facts = Some(plan.facts);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Some(policy), Some(facts)) = (&self.policy, self.facts) else {
            return Action::Continue;
        };
        let headers = read_headers(MapType::HttpResponseHeaders);
        let edits = policy.response_edits(facts, &headers);
        if let Some(vary) = &edits.vary {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "vary", Some(vary));
            self.pending.bump(Metric::VaryAdded as usize);
        }
        if let Some(cc) = &edits.cache_control {
            let _ =
                hostcalls::set_map_value(MapType::HttpResponseHeaders, "cache-control", Some(cc));
        }
        if edits.private_set {
            self.pending.bump(Metric::PrivateSet as usize);
        }
        if edits.ttl_set {
            self.pending.bump(Metric::TtlSet as usize);
        }
        Action::Continue
    }
}
