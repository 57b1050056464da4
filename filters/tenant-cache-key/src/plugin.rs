//! The tenant_cache_key plugin over any [`Host`]: one header-map read per phase, the planned
//! edits written in one pass, the stream caps (admitted on the request headers, released when
//! the request ends). Every decision comes from [`TenantPolicy`]; counters, stream counts and
//! the rejection replies are in [`crate::host`]. `filter` (wasm32) runs it in Envoy.

use crate::host::{on_route, RequestEnd, TenantMetrics, TenantStreams, PLUGIN};
use crate::{RequestFacts, TenantPolicy};
use filter_core::host::{Action, Map};
use filter_core::route::RouteFacts;
use filter_core::{ConfigError, Host, HttpFilter, Plugin};
use std::rc::Rc;

/// A VM's tenant_cache_key state.
pub struct TenantPlugin<H: Host> {
    host: H,
    policy: TenantPolicy,
    metrics: TenantMetrics<H>,
    /// The stream caps, when the policy has a `streams` block.
    streams: Option<TenantStreams<H>>,
}

impl<H: Host> Plugin for TenantPlugin<H> {
    type Host = H;
    type Http = TenantRequest<H>;
    const NAME: &'static str = PLUGIN;

    fn configure(host: H, config: &[u8]) -> Result<Self, ConfigError> {
        let policy = TenantPolicy::new(config)?;
        Ok(TenantPlugin {
            metrics: TenantMetrics::define(&host),
            streams: policy.streams().map(|l| TenantStreams::new(&host, l)),
            policy,
            host,
        })
    }

    fn tick(&self) {
        if let Some(s) = &self.streams {
            s.tick(&self.metrics);
        }
    }

    fn flush(&self) {
        self.metrics.flush();
    }

    fn http_context(self: &Rc<Self>, context_id: u32) -> TenantRequest<H> {
        TenantRequest {
            plugin: Rc::clone(self),
            context_id,
            facts: None,
        }
    }
}

/// One request.
pub struct TenantRequest<H: Host> {
    plugin: Rc<TenantPlugin<H>>,
    context_id: u32,
    /// Set in the request phase when the response phase has something to do: this instance
    /// shapes responses for caches, or the answer must leave the gateway private (request
    /// stage, downstream of Envoy's cache: it sees cache hits too).
    facts: Option<RequestFacts>,
}

impl<H: Host> TenantRequest<H> {
    /// This request's stream slot, if it took one, is released when it ends (completed,
    /// refused, reset by either side, timed out: `on_done` and `on_log` come for every request;
    /// the second finds nothing to release).
    fn end_stream(&self) {
        if let Some(s) = &self.plugin.streams {
            s.end(self.context_id, &self.plugin.metrics);
        }
    }
}

impl<H: Host> HttpFilter for TenantRequest<H> {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let p = &*self.plugin;
        let headers = p.host.headers(Map::RequestHeaders);
        let request_id = headers.get("x-request-id");
        let needs = p.policy.routes().map(|b| b.needs()).unwrap_or_default();
        let facts = RouteFacts::read(&p.host, needs);
        let on = match on_route(&p.host, &p.policy, &facts) {
            Ok(on) => on,
            Err(refusal) => {
                p.metrics.refuse_route(&p.host, &refusal, request_id);
                return Action::Pause;
            }
        };
        let ctx = p
            .policy
            .context(p.host.now_ms(), |path| p.host.property(path));
        let plan = p.policy.request_plan_on(&headers, on, &ctx);
        p.host.write_edits(Map::RequestHeaders, &plan.edits());
        if p.metrics.finish_request(&p.host, &plan, request_id) == RequestEnd::Rejected {
            return Action::Pause;
        }
        if let (Some(claim), Some(streams)) = (&plan.stream, &p.streams) {
            if streams.admit(self.context_id, claim, request_id, &p.metrics) == RequestEnd::Rejected
            {
                return Action::Pause;
            }
        }
        if p.policy.edits_responses(&plan.facts) {
            self.facts = Some(plan.facts);
        }
        Action::Continue
    }

    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        let Some(facts) = self.facts else {
            return Action::Continue;
        };
        let p = &*self.plugin;
        let headers = p.host.headers(Map::ResponseHeaders);
        let edits = p.policy.response_edits(facts, &headers);
        p.host.write_edits(Map::ResponseHeaders, &edits.edits());
        p.metrics.response(&edits);
        Action::Continue
    }

    fn on_done(&mut self) {
        self.end_stream();
    }

    fn on_log(&mut self) {
        self.end_stream();
    }
}
