//! The bundle plugin over any [`Host`]: one root state per VM holding the compiled
//! [`Pipeline`], the jwt_auth stage's [`WorkerAuth`], tenant_cache_key's stream caps and each
//! stage's counters; one [`BundleRequest`] per request holding transform's per-request state and
//! tenant_cache_key's response facts. `filter` (wasm32) runs it in Envoy; the glue tests drive it
//! over `filter_core::testing::FakeHost`.
//!
//! Request headers: one read; jwt_auth decides (a denial is its local reply, a wait pauses the
//! request until keys arrive, then [`WorkerAuth`] hands it back to [`continue_request`]); the
//! later stages edit the in-VM copy; the net difference is written back in one batch.
//! Response headers: read only when a stage needs them; transform, then tenant_cache_key.
//! Request end (`on_done` / `on_log`): the stream slot tenant_cache_key took, if any, is freed.
//!
//! Aggregation comes last: a request every other stage admitted, whose route names an endpoint,
//! is answered from its legs (aggregate's own [`AggregateHttp`]) instead of going upstream --
//! at once, or when jwt_auth or the ratelimit stage lets a paused request go.

use crate::config::BundleConfig;
use crate::pipeline::{Flow, OnRoutes, Pipeline, StageEffects};
use aggregate::{AggregateHttp, AggregatePlugin};
use filter_core::headers::changes;
use filter_core::host::{Action, Map};
use filter_core::route::{Needs, Refusal, RouteFacts};
use filter_core::{ConfigError, HeaderEdit, HeaderMap, Host, HttpFilter, Plugin};
use jwt_auth::host::WorkerAuth;
use ratelimit::host::{limit_headers, Limiter, RateHeaders, Verdict};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use tenant_cache_key::host::{on_route, RequestEnd, TenantMetrics, TenantStreams};
use tenant_cache_key::{OnRoute, RequestFacts, RequestPlan};
use transform::{Direction, RequestEdits, ResponseNeeds, TransformMetrics, TransformRequest};

/// The name the plugin logs under.
pub const PLUGIN: &str = "bundle";

/// What every request of a VM shares.
pub struct BundlePlugin<H: Host> {
    host: H,
    pipeline: Pipeline,
    auth: Option<RefCell<WorkerAuth<H>>>,
    tenant_metrics: Option<TenantMetrics<H>>,
    /// tenant_cache_key's stream caps, when its section has a `streams` block.
    tenant_streams: Option<TenantStreams<H>>,
    transform_metrics: Option<TransformMetrics<H>>,
    /// The ratelimit stage (leased global limits), last.
    limiter: Option<Limiter<H>>,
    /// Requests jwt_auth paused, by context id, until it hands them back.
    paused: RefCell<HashMap<u32, Rc<RefCell<RequestState<H>>>>>,
    /// The aggregation stage, last.
    aggregate: Option<Rc<AggregatePlugin<H>>>,
    /// Requests the ratelimit stage holds that may aggregate when it lets them go.
    held: RefCell<HashMap<u32, Rc<RefCell<RequestState<H>>>>>,
    /// The limiter's admit hook is installed (once, from the first request).
    hooked: Cell<bool>,
    /// What every request reads of its route, for all stages at once.
    route_needs: Needs,
}

/// One request's state across its phases.
struct RequestState<H: Host> {
    end_of_stream: bool,
    transform: TransformRequest<H>,
    tenant_facts: Option<RequestFacts>,
    /// The ratelimit stage's limit, for the response headers.
    rate: Option<RateHeaders>,
    /// The matched route's policies, read once for every stage.
    route: RouteFacts,
    /// The request's aggregation, once started.
    aggregate: Option<AggregateHttp<H>>,
}

impl<H: Host> BundlePlugin<H> {
    /// The route facts every stage decides on, read once for the whole bundle.
    fn route_facts(&self) -> RouteFacts {
        RouteFacts::read(&self.host, self.route_needs)
    }

    /// What the stages that bind policies to routes need of a request's route, together
    /// (nothing when none does): fixed by the configuration.
    fn stage_route_needs(&self) -> Needs {
        let jwt = self.auth.as_ref().map(|a| a.borrow().route_needs());
        let tenant = (self.pipeline.tenant.as_ref()).and_then(|t| t.routes().map(|b| b.needs()));
        let transform =
            (self.pipeline.transform.as_ref()).and_then(|t| t.routes().map(|b| b.needs()));
        let limits = self.limiter.as_ref().map(|l| l.route_needs());
        let aggregate = self.aggregate.as_ref().map(|a| a.route_needs());
        [jwt, tenant, transform, limits, aggregate]
            .into_iter()
            .flatten()
            .fold(Needs::default(), Needs::union)
    }

    /// The request ended: frees the stream slot it took, if any (exactly once).
    fn end_request(&self, context_id: u32) {
        if let (Some(s), Some(m)) = (&self.tenant_streams, &self.tenant_metrics) {
            s.end(context_id, m);
        }
    }

    /// jwt_auth's callback for a paused request it now allows (the effective context is
    /// already the request's).
    fn resume(&self) -> impl FnMut(u32, &HeaderMap, &[HeaderEdit]) + '_ {
        move |id, headers, edits| {
            let Some(state) = self.paused.borrow_mut().remove(&id) else {
                return;
            };
            let admission = continue_request(self, id, &mut state.borrow_mut(), headers, edits);
            if self.after_stages(id, &state, admission) {
                self.host.resume_request();
            }
        }
    }

    /// What follows the stages: an admitted request aggregates or goes upstream (true); a
    /// request the ratelimit stage holds is kept for its admit hook when it may aggregate.
    fn after_stages(
        &self,
        context_id: u32,
        state: &Rc<RefCell<RequestState<H>>>,
        admission: Admission,
    ) -> bool {
        match admission {
            Admission::Upstream => self.start_aggregate(context_id, &mut state.borrow_mut()),
            Admission::Held => {
                if self.aggregate.is_some() {
                    self.held.borrow_mut().insert(context_id, Rc::clone(state));
                }
                false
            }
            Admission::Answered => false,
        }
    }

    /// The last stage on an admitted request: true when it goes upstream, false when the
    /// aggregation stage answers it (now, or from its legs).
    fn start_aggregate(&self, context_id: u32, state: &mut RequestState<H>) -> bool {
        let Some(stage) = &self.aggregate else {
            return true;
        };
        let mut request = stage.http_context(context_id);
        match request.start_on(&state.route) {
            Action::Continue => true,
            _ => {
                state.aggregate = Some(request);
                false
            }
        }
    }

    /// The ratelimit stage lets a held request go: true when its aggregation took it over.
    fn admitted(&self, context_id: u32) -> bool {
        match self.held.borrow_mut().remove(&context_id) {
            Some(state) => !self.start_aggregate(context_id, &mut state.borrow_mut()),
            None => false,
        }
    }

    /// Gives the limiter the say on the requests it lets go (once: the hook needs the plugin's
    /// `Rc`, which exists from the first request on).
    fn hook_limiter(self: &Rc<Self>) {
        let Some(limiter) = self.limiter.as_ref().filter(|_| self.aggregate.is_some()) else {
            return;
        };
        if self.hooked.replace(true) {
            return;
        }
        let plugin = Rc::downgrade(self);
        limiter.on_admit(Box::new(move |id| {
            plugin.upgrade().is_some_and(|p| p.admitted(id))
        }));
    }
}

impl<H: Host> Plugin for BundlePlugin<H> {
    type Host = H;
    type Http = BundleRequest<H>;
    const NAME: &'static str = PLUGIN;

    fn configure(host: H, bytes: &[u8]) -> Result<Self, ConfigError> {
        let config = BundleConfig::parse(bytes)?;
        let auth = (config.jwt_auth.as_ref())
            .map(|c| RefCell::new(WorkerAuth::new(host.clone(), Arc::clone(c))));
        let tenant = config.tenant.as_ref();
        let tenant_metrics = tenant.map(|_| TenantMetrics::define(&host));
        let tenant_streams =
            (tenant.and_then(|t| t.streams())).map(|l| TenantStreams::new(&host, l));
        let transform_metrics =
            (config.transform.as_ref()).map(|_| TransformMetrics::define(&host));
        let (pipeline, ratelimit, aggregate) = Pipeline::new(config);
        let mut plugin = BundlePlugin {
            auth,
            tenant_metrics,
            tenant_streams,
            transform_metrics,
            limiter: ratelimit.map(|c| Limiter::new(host.clone(), c)),
            aggregate: aggregate.map(|c| Rc::new(AggregatePlugin::new(host.clone(), c))),
            held: RefCell::new(HashMap::new()),
            hooked: Cell::new(false),
            pipeline,
            paused: RefCell::new(HashMap::new()),
            route_needs: Needs::default(),
            host,
        };
        plugin.route_needs = plugin.stage_route_needs();
        Ok(plugin)
    }

    /// jwt_auth's upkeep (keys, revocations, paused requests whose time is up), then stream
    /// slot upkeep (lease renewal, retried releases).
    fn tick(&self) {
        if let Some(auth) = &self.auth {
            auth.borrow_mut().on_tick(&mut self.resume());
        }
        if let (Some(s), Some(m)) = (&self.tenant_streams, &self.tenant_metrics) {
            s.tick(m);
        }
        if let Some(l) = &self.limiter {
            l.tick();
        }
    }

    fn flush(&self) {
        if let Some(auth) = &self.auth {
            auth.borrow().flush();
        }
        if let Some(m) = &self.tenant_metrics {
            m.flush();
        }
        if let Some(m) = &self.transform_metrics {
            m.flush();
        }
        if let Some(l) = &self.limiter {
            l.metrics.flush();
        }
        if let Some(a) = &self.aggregate {
            a.flush();
        }
    }

    fn on_http_call_response(&self, token: u32, body_size: usize) {
        if let Some(auth) = &self.auth {
            (auth.borrow_mut()).on_http_call_response(token, body_size, &mut self.resume());
        }
    }

    /// Revocation lists (jwt_auth) and leases (ratelimit) answer here; each ignores the
    /// other's tokens.
    fn on_grpc_call_response(&self, token: u32, status: u32, size: usize) {
        if let Some(auth) = &self.auth {
            auth.borrow_mut().on_grpc_call_response(token, status, size);
        }
        if let Some(l) = &self.limiter {
            l.on_lease_response(token, status, size);
        }
    }

    fn http_context(self: &Rc<Self>, context_id: u32) -> BundleRequest<H> {
        self.hook_limiter();
        let state = RequestState {
            end_of_stream: false,
            transform: TransformRequest::new(self.host.clone()),
            tenant_facts: None,
            rate: None,
            route: RouteFacts::default(),
            aggregate: None,
        };
        BundleRequest {
            context_id,
            plugin: Rc::clone(self),
            state: Rc::new(RefCell::new(state)),
        }
    }
}

/// The host's part of the stages for one request.
struct HostEffects<'a, H: Host> {
    plugin: &'a BundlePlugin<H>,
    context_id: u32,
    state: &'a mut RequestState<H>,
    request_id: Option<&'a str>,
}

impl<H: Host> StageEffects for HostEffects<'_, H> {
    fn tenant(&mut self, plan: &RequestPlan<'_>) -> bool {
        let p = self.plugin;
        let Some(m) = &p.tenant_metrics else {
            return true;
        };
        if m.finish_request(&p.host, plan, self.request_id) == RequestEnd::Rejected {
            return false;
        }
        match (&plan.stream, &p.tenant_streams) {
            (Some(claim), Some(s)) => {
                s.admit(self.context_id, claim, self.request_id, m) == RequestEnd::Continue
            }
            _ => true,
        }
    }

    fn transform(&mut self, plan: RequestEdits) -> Vec<HeaderEdit> {
        match &self.plugin.transform_metrics {
            Some(m) => (self.state.transform).accept_plan(plan, m, self.state.end_of_stream),
            None => Vec::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.plugin.host.now_ms()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.plugin.host.property(path)
    }
}

/// What the stages after jwt_auth decided on a request.
enum Admission {
    /// Every stage let it go on.
    Upstream,
    /// A stage answered it.
    Answered,
    /// The ratelimit stage holds it for tokens (its limiter lets it go later).
    Held,
}

/// Runs the stages after jwt_auth on the request whose headers were read as `original`, then
/// writes the net difference.
fn continue_request<H: Host>(
    plugin: &BundlePlugin<H>,
    context_id: u32,
    state: &mut RequestState<H>,
    original: &HeaderMap,
    auth: &[HeaderEdit],
) -> Admission {
    let on = match route_choices(plugin, &state.route) {
        Ok(on) => on,
        Err((refusal, tenant)) => {
            let request_id = original.get("x-request-id");
            match (&plugin.tenant_metrics, tenant) {
                (Some(m), true) => m.refuse_route(&plugin.host, &refusal, request_id),
                _ => refusal.send(&plugin.host, request_id),
            }
            return Admission::Answered;
        }
    };
    let mut headers = original.clone();
    let mut fx = HostEffects {
        plugin,
        context_id,
        state,
        request_id: original.get("x-request-id"),
    };
    match plugin.pipeline.after_auth(&mut headers, auth, on, &mut fx) {
        Flow::Answered => Admission::Answered,
        Flow::Continue { tenant_facts } => {
            state.tenant_facts = tenant_facts;
            let net = changes(original, &headers);
            plugin.host.write_edits(Map::RequestHeaders, &net);
            // Last, on the headers the stages left: the ratelimit stage may answer the request
            // or hold it for tokens (its limiter resumes it).
            match plugin
                .limiter
                .as_ref()
                .map(|l| l.on_request(context_id, &headers, &state.route))
            {
                None => Admission::Upstream,
                Some(Verdict::Continue(rate)) => {
                    state.rate = rate;
                    Admission::Upstream
                }
                Some(Verdict::Answered) => Admission::Answered,
                Some(Verdict::Paused) => Admission::Held,
            }
        }
    }
}

/// What the route chose for tenant_cache_key and transform, or the refusal of the first stage
/// that refuses it (true: tenant_cache_key's).
fn route_choices<'p, H: Host>(
    plugin: &'p BundlePlugin<H>,
    route: &RouteFacts,
) -> Result<OnRoutes<'p>, (Refusal, bool)> {
    let tenant = match &plugin.pipeline.tenant {
        None => OnRoute::Matchers,
        Some(policy) => on_route(&plugin.host, policy, route).map_err(|r| (r, true))?,
    };
    let transform = match &plugin.pipeline.transform {
        None => None,
        Some(t) => t.route_choice(route).map_err(|r| (r, false))?,
    };
    Ok(OnRoutes { tenant, transform })
}

/// One request through the bundle.
pub struct BundleRequest<H: Host> {
    context_id: u32,
    plugin: Rc<BundlePlugin<H>>,
    state: Rc<RefCell<RequestState<H>>>,
}

impl<H: Host> BundleRequest<H> {
    fn on_body(&mut self, direction: Direction, body_size: usize, end_of_stream: bool) -> Action {
        let p = &*self.plugin;
        let (Some(t), Some(m)) = (&p.pipeline.transform, &p.transform_metrics) else {
            return Action::Continue;
        };
        (self.state.borrow_mut().transform).on_body(t, m, direction, body_size, end_of_stream)
    }

    fn on_trailers(&mut self, direction: Direction) -> Action {
        self.state.borrow_mut().transform.on_trailers(direction);
        Action::Continue
    }

    /// jwt_auth's verdict on the request: its edits, or None when it answered or paused it.
    fn authenticate(&self, original: &HeaderMap, route: &RouteFacts) -> Option<Vec<HeaderEdit>> {
        let Some(auth) = &self.plugin.auth else {
            return Some(Vec::new());
        };
        let verdict = auth
            .borrow_mut()
            .on_request_headers(self.context_id, original, route);
        match verdict {
            jwt_auth::host::Verdict::Allow(edits) => Some(edits),
            jwt_auth::host::Verdict::Denied => None,
            jwt_auth::host::Verdict::Paused => {
                let paused = Rc::clone(&self.state);
                self.plugin
                    .paused
                    .borrow_mut()
                    .insert(self.context_id, paused);
                None
            }
        }
    }
}

impl<H: Host> HttpFilter for BundleRequest<H> {
    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let original = self.plugin.host.headers(Map::RequestHeaders);
        self.state.borrow_mut().end_of_stream = end_of_stream;
        self.state.borrow_mut().route = self.plugin.route_facts();
        let auth_edits = self.authenticate(&original, &self.state.borrow().route);
        let Some(auth_edits) = auth_edits else {
            return Action::Pause;
        };
        let (p, id) = (&*self.plugin, self.context_id);
        let admission =
            continue_request(p, id, &mut self.state.borrow_mut(), &original, &auth_edits);
        match p.after_stages(id, &self.state, admission) {
            true => Action::Continue,
            false => Action::Pause,
        }
    }

    fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(a) = &mut self.state.borrow_mut().aggregate {
            return a.on_request_body(body_size, end_of_stream);
        }
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_request_trailers(&mut self) -> Action {
        if let Some(a) = &mut self.state.borrow_mut().aggregate {
            return a.on_request_trailers();
        }
        self.on_trailers(Direction::Request)
    }

    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        let p = &*self.plugin;
        let mut state = self.state.borrow_mut();
        let transform = (p.pipeline.transform.as_ref()).zip(p.transform_metrics.as_ref());
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
                    p.host.write_edits(Map::ResponseHeaders, &edits);
                }
            }
            _ => {
                let original = p.host.headers(Map::ResponseHeaders);
                let mut response = original.clone();
                if let Some((t, m)) = transform {
                    let edits =
                        (state.transform).on_response_headers(t, m, Some(&response), end_of_stream);
                    for edit in &edits {
                        edit.apply_to(&mut response);
                    }
                }
                if let Some(facts) = facts {
                    let edits = p.pipeline.tenant_response(facts, &mut response);
                    if let (Some(e), Some(m)) = (edits, &p.tenant_metrics) {
                        m.response(&e);
                    }
                }
                let net = changes(&original, &response);
                p.host.write_edits(Map::ResponseHeaders, &net);
            }
        }
        let rate = state
            .rate
            .or_else(|| (p.limiter.as_ref()).and_then(|l| l.take_resumed_headers(self.context_id)));
        if let Some(h) = rate {
            let now = p.host.now_ms();
            for (name, value) in limit_headers(h.limit, h.remaining, now) {
                p.host.set_header(Map::ResponseHeaders, name, Some(&value));
            }
        }
        Action::Continue
    }

    fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_response_trailers(&mut self) -> Action {
        self.on_trailers(Direction::Response)
    }

    /// A leg of this request's aggregation, or a key fetch of jwt_auth (each ignores the
    /// other's tokens).
    fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        if let Some(a) = &mut self.state.borrow_mut().aggregate {
            a.on_http_call_response(token, body_size);
        }
        self.plugin.on_http_call_response(token, body_size);
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(l) = &self.plugin.limiter {
            l.on_lease_response(token, status, size);
        }
    }

    fn on_done(&mut self) {
        if let Some(auth) = &self.plugin.auth {
            auth.borrow_mut().on_done(self.context_id);
        }
        self.plugin.paused.borrow_mut().remove(&self.context_id);
        self.plugin.held.borrow_mut().remove(&self.context_id);
        if let Some(a) = &mut self.state.borrow_mut().aggregate {
            a.on_done();
        }
        self.plugin.end_request(self.context_id);
        if let Some(l) = &self.plugin.limiter {
            l.on_done(self.context_id);
        }
    }

    fn on_log(&mut self) {
        self.plugin.end_request(self.context_id);
    }
}
