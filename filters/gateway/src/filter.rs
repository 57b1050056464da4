//! The gateway plugin (wasm32): one root context per VM holding the compiled [`Pipeline`], the
//! jwt_auth stage's [`WorkerAuth`], tenant_cache_key's stream caps and each stage's counters; one
//! HTTP context per request holding transform's per-request state and tenant_cache_key's
//! response facts.
//!
//! Request headers: one read; jwt_auth decides (a denial is its local reply, a wait pauses the
//! request until keys arrive, then [`WorkerAuth`] hands it back to [`continue_request`]); the
//! later stages edit the in-VM copy; the net difference is written back in one batch.
//! Response headers: read only when a stage needs them; transform, then tenant_cache_key.
//! Request end (`on_done` / `on_log`): the stream slot tenant_cache_key took, if any, is freed.

use crate::config::GatewayConfig;
use crate::pipeline::{Flow, Pipeline, StageEffects};
use filter_core::headers::changes;
use filter_core::wasm::{apply_changes, log_config_error, read_headers};
use filter_core::HeaderMap;
use jwt_auth::host::{Verdict, WorkerAuth};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tenant_cache_key::host::{RequestEnd, TenantMetrics, TenantStreams};
use tenant_cache_key::{RequestFacts, RequestPlan};
use transform::host::{Direction, ResponseNeeds, TransformMetrics, TransformRequest};
use transform::RequestEdits;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(GatewayRoot::default()));
}}

const PLUGIN: &str = "gateway";
/// The tick without a jwt_auth stage: only counters to flush.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// What every HTTP context of a VM shares.
struct Shared {
    pipeline: Pipeline,
    tenant_metrics: Option<TenantMetrics>,
    /// tenant_cache_key's stream caps, when its section has a `streams` block.
    tenant_streams: Option<TenantStreams>,
    transform_metrics: Option<TransformMetrics>,
    /// Requests jwt_auth paused, by context id, until it hands them back.
    paused: RefCell<HashMap<u32, Rc<RefCell<RequestState>>>>,
}

impl Shared {
    fn flush(&self) {
        if let Some(m) = &self.tenant_metrics {
            m.flush();
        }
        if let Some(m) = &self.transform_metrics {
            m.flush();
        }
    }

    /// The root tick: stream slot upkeep (lease renewal, retried releases), then the counters.
    fn tick(&self) {
        if let (Some(s), Some(m)) = (&self.tenant_streams, &self.tenant_metrics) {
            s.tick(m);
        }
        self.flush();
    }

    /// The request ended: frees the stream slot it took, if any (exactly once).
    fn end_request(&self, context_id: u32) {
        if let (Some(s), Some(m)) = (&self.tenant_streams, &self.tenant_metrics) {
            s.end(context_id, m);
        }
    }
}

/// One request's state across its phases.
#[derive(Default)]
struct RequestState {
    end_of_stream: bool,
    transform: TransformRequest,
    tenant_facts: Option<RequestFacts>,
}

/// The host's part of the stages for one request.
struct HostEffects<'a> {
    shared: &'a Shared,
    context_id: u32,
    state: &'a mut RequestState,
    request_id: Option<&'a str>,
}

impl StageEffects for HostEffects<'_> {
    fn tenant(&mut self, plan: &RequestPlan<'_>) -> bool {
        let Some(m) = &self.shared.tenant_metrics else {
            return true;
        };
        if m.finish_request(plan, self.request_id) == RequestEnd::Rejected {
            return false;
        }
        match (&plan.stream, &self.shared.tenant_streams) {
            (Some(claim), Some(s)) => {
                s.admit(self.context_id, claim, self.request_id, m) == RequestEnd::Continue
            }
            _ => true,
        }
    }

    fn transform(&mut self, plan: RequestEdits) -> Vec<transform::HeaderEdit> {
        match &self.shared.transform_metrics {
            Some(m) => self
                .state
                .transform
                .accept_plan(plan, m, self.state.end_of_stream),
            None => Vec::new(),
        }
    }
}

/// Runs the stages after jwt_auth on the request whose headers were read as `original`, then
/// writes the net difference. False when a stage answered the request.
fn continue_request(
    shared: &Shared,
    context_id: u32,
    state: &mut RequestState,
    original: &HeaderMap,
    auth: &[jwt_auth::engine::HeaderEdit],
) -> bool {
    let mut headers = original.clone();
    let mut fx = HostEffects {
        shared,
        context_id,
        state,
        request_id: original.get("x-request-id"),
    };
    match shared.pipeline.after_auth(&mut headers, auth, &mut fx) {
        Flow::Answered => false,
        Flow::Continue { tenant_facts } => {
            state.tenant_facts = tenant_facts;
            apply_changes(MapType::HttpRequestHeaders, &changes(original, &headers));
            true
        }
    }
}

#[derive(Default)]
struct GatewayRoot {
    shared: Option<Rc<Shared>>,
    auth: Option<Rc<RefCell<WorkerAuth>>>,
}

/// jwt_auth's callback for a paused request it now allows (the effective context is already
/// the request's).
fn resume(shared: &Shared) -> impl FnMut(u32, &HeaderMap, &[jwt_auth::engine::HeaderEdit]) + '_ {
    move |id, headers, edits| {
        let Some(state) = shared.paused.borrow_mut().remove(&id) else {
            return;
        };
        if continue_request(shared, id, &mut state.borrow_mut(), headers, edits) {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl GatewayRoot {
    fn on_http_call_response(&self, token: u32, body_size: usize) {
        if let (Some(shared), Some(auth)) = (&self.shared, &self.auth) {
            auth.borrow_mut()
                .on_http_call_response(token, body_size, &mut resume(shared));
        }
    }
}

impl Context for GatewayRoot {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(auth) = &self.auth {
            auth.borrow_mut().on_grpc_call_response(token, status, size);
        }
    }

    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        GatewayRoot::on_http_call_response(self, token, body_size);
    }

    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            shared.flush();
        }
        true
    }
}

impl RootContext for GatewayRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match GatewayConfig::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log_config_error(PLUGIN, &e);
                return false;
            }
        };
        self.auth = config
            .jwt_auth
            .as_ref()
            .map(|c| Rc::new(RefCell::new(WorkerAuth::new(Arc::clone(c)))));
        let shared = Shared {
            tenant_metrics: config.tenant.as_ref().map(|_| TenantMetrics::define()),
            tenant_streams: config
                .tenant
                .as_ref()
                .and_then(|t| t.streams())
                .map(TenantStreams::new),
            transform_metrics: config
                .transform
                .as_ref()
                .map(|_| TransformMetrics::define()),
            pipeline: Pipeline::from(config),
            paused: RefCell::new(HashMap::new()),
        };
        self.shared = Some(Rc::new(shared));
        let tick = match self.auth {
            Some(_) => jwt_auth::host::TICK,
            None => FLUSH_EVERY,
        };
        let _ = hostcalls::set_tick_period(tick);
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = &self.shared else { return };
        if let Some(auth) = &self.auth {
            auth.borrow_mut().on_tick(&mut resume(shared));
        }
        shared.tick();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GatewayHttp {
            context_id,
            shared: Rc::clone(self.shared.as_ref()?),
            auth: self.auth.clone(),
            state: Rc::default(),
        }))
    }
}

struct GatewayHttp {
    context_id: u32,
    shared: Rc<Shared>,
    auth: Option<Rc<RefCell<WorkerAuth>>>,
    state: Rc<RefCell<RequestState>>,
}

impl GatewayHttp {
    fn on_body(&mut self, direction: Direction, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(t), Some(m)) = (
            &self.shared.pipeline.transform,
            &self.shared.transform_metrics,
        ) else {
            return Action::Continue;
        };
        self.state
            .borrow_mut()
            .transform
            .on_body(t, m, direction, body_size, end_of_stream)
    }

    fn on_trailers(&mut self, direction: Direction) -> Action {
        self.state.borrow_mut().transform.on_trailers(direction);
        Action::Continue
    }
}

impl Context for GatewayHttp {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(auth) = &self.auth {
            auth.borrow_mut()
                .on_http_call_response(token, body_size, &mut resume(&self.shared));
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(auth) = &self.auth {
            auth.borrow_mut().on_done(self.context_id);
        }
        self.shared.paused.borrow_mut().remove(&self.context_id);
        self.shared.end_request(self.context_id);
        true
    }
}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let original = read_headers(MapType::HttpRequestHeaders);
        self.state.borrow_mut().end_of_stream = end_of_stream;
        let auth_edits = match &self.auth {
            None => Vec::new(),
            Some(auth) => {
                let verdict = auth
                    .borrow_mut()
                    .on_request_headers(self.context_id, &original);
                match verdict {
                    Verdict::Allow(edits) => edits,
                    Verdict::Denied => return Action::Pause,
                    Verdict::Paused => {
                        self.shared
                            .paused
                            .borrow_mut()
                            .insert(self.context_id, Rc::clone(&self.state));
                        return Action::Pause;
                    }
                }
            }
        };
        let mut state = self.state.borrow_mut();
        if continue_request(
            &self.shared,
            self.context_id,
            &mut state,
            &original,
            &auth_edits,
        ) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        self.on_trailers(Direction::Request)
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let shared = &self.shared;
        let mut state = self.state.borrow_mut();
        let transform = shared
            .pipeline
            .transform
            .as_ref()
            .zip(shared.transform_metrics.as_ref());
        let needs = transform.map_or(ResponseNeeds::Nothing, |(t, _)| {
            state.transform.response_needs(t)
        });
        let facts = state.tenant_facts;
        match (needs, facts) {
            (ResponseNeeds::Nothing, None) => {}
            // Only transform, and it does not read the response: no header-map read at all.
            (ResponseNeeds::Blind, None) => {
                if let Some((t, m)) = transform {
                    let edits = state
                        .transform
                        .on_response_headers(t, m, None, end_of_stream);
                    apply_changes(MapType::HttpResponseHeaders, &edits);
                }
            }
            _ => {
                let original = read_headers(MapType::HttpResponseHeaders);
                let mut response = original.clone();
                if let Some((t, m)) = transform {
                    let edits =
                        state
                            .transform
                            .on_response_headers(t, m, Some(&response), end_of_stream);
                    for edit in &edits {
                        edit.apply_to(&mut response);
                    }
                }
                if let Some(facts) = facts {
                    let edits = shared.pipeline.tenant_response(facts, &mut response);
                    if let (Some(e), Some(m)) = (edits, &shared.tenant_metrics) {
                        m.response(&e);
                    }
                }
                apply_changes(MapType::HttpResponseHeaders, &changes(&original, &response));
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _: usize) -> Action {
        self.on_trailers(Direction::Response)
    }

    fn on_log(&mut self) {
        self.shared.end_request(self.context_id);
    }
}
