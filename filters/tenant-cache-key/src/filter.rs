//! The tenant_cache_key plugin (wasm32, feature `plugin`): one header-map read per phase, the
//! planned removals and sets, the stream caps (admitted on the request headers, released when
//! the request ends). Every decision comes from [`TenantPolicy`]; counters, stream counts and
//! the rejection replies are in [`crate::host`].

use crate::host::{RequestEnd, TenantMetrics, TenantStreams, FLUSH_EVERY, PLUGIN};
use crate::{RequestFacts, TenantPolicy};
use filter_core::wasm::{log_config_error, read_headers};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(TenantRoot::default()));
}}

#[derive(Default)]
struct TenantRoot {
    policy: Option<Rc<TenantPolicy>>,
    metrics: Option<Rc<TenantMetrics>>,
    /// The stream caps, when the policy has a `streams` block.
    streams: Option<Rc<TenantStreams>>,
}

impl Context for TenantRoot {
    fn on_done(&mut self) -> bool {
        if let Some(m) = &self.metrics {
            m.flush();
        }
        true
    }
}

impl RootContext for TenantRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match TenantPolicy::new(&config) {
            Ok(policy) => {
                self.streams = policy.streams().map(|l| Rc::new(TenantStreams::new(l)));
                self.policy = Some(Rc::new(policy));
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(TenantMetrics::define()));
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
        if let Some(m) = &self.metrics {
            if let Some(s) = &self.streams {
                s.tick(m);
            }
            m.flush();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let active = match (&self.policy, &self.metrics) {
            (Some(p), Some(m)) => Some((Rc::clone(p), Rc::clone(m))),
            _ => None,
        };
        Some(Box::new(TenantHttp {
            context_id,
            active,
            streams: self.streams.clone(),
            facts: None,
        }))
    }
}

struct TenantHttp {
    context_id: u32,
    /// None when the plugin has no valid configuration (it then does nothing).
    active: Option<(Rc<TenantPolicy>, Rc<TenantMetrics>)>,
    /// The instance's stream caps: this request's slot, if it took one, is released when it
    /// ends (completed, refused, reset by either side, timed out: `on_done` and `on_log` come
    /// for every request; the second finds nothing to release).
    streams: Option<Rc<TenantStreams>>,
    /// Set in the request phase when the response phase has something to do: this instance
    /// shapes responses for caches, or the answer must leave the gateway private (request
    /// stage, downstream of Envoy's cache: it sees cache hits too).
    facts: Option<RequestFacts>,
}

impl TenantHttp {
    fn end_stream(&self) {
        if let (Some(s), Some((_, m))) = (&self.streams, &self.active) {
            s.end(self.context_id, m);
        }
    }
}

impl Context for TenantHttp {
    fn on_done(&mut self) -> bool {
        self.end_stream();
        true
    }
}

impl HttpContext for TenantHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some((policy, metrics)) = &self.active else {
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
        let request_id = headers.get("x-request-id");
        if metrics.finish_request(&plan, request_id) == RequestEnd::Rejected {
            return Action::Pause;
        }
        if let (Some(claim), Some(streams)) = (&plan.stream, &self.streams) {
            if streams.admit(self.context_id, claim, request_id, metrics) == RequestEnd::Rejected {
                return Action::Pause;
            }
        }
        if policy.edits_responses(&plan.facts) {
            self.facts = Some(plan.facts);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Some((policy, metrics)), Some(facts)) = (&self.active, self.facts) else {
            return Action::Continue;
        };
        let headers = read_headers(MapType::HttpResponseHeaders);
        let edits = policy.response_edits(facts, &headers);
        if let Some(vary) = &edits.vary {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "vary", Some(vary));
        }
        if let Some(cc) = &edits.cache_control {
            let _ =
                hostcalls::set_map_value(MapType::HttpResponseHeaders, "cache-control", Some(cc));
        }
        metrics.response(&edits);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.end_stream();
    }
}
