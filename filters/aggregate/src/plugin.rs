//! The aggregate plugin over any [`Host`]: [`AggregatePlugin`] is a VM's state (the compiled
//! configuration and the counters), [`AggregateHttp`] one request. A request whose route names
//! an endpoint never reaches the router: its legs are dispatched at once from
//! `on_request_headers`, each answer is checked and kept, and the request is answered locally
//! when the last leg is in or a required leg failed. A route naming no endpoint passes untouched.
//!
//! A client that leaves ends the request's context; Envoy then cancels the calls still out.

use crate::aggregation::{Aggregation, Composed, Next};
use crate::cache::{self, Cache, Hit};
use crate::config::{Config, Endpoint};
use crate::metrics::Metrics;
use crate::outcome::{check_head, read_body, Failure, Head};
use crate::request::call_headers;
use filter_core::host::{self, Buffer, Host, Level, Map};
use filter_core::route::{Bound, Choice, Needs, Refusal, RouteFacts};
use filter_core::{Action, ConfigError, HeaderMap, HttpFilter, Plugin};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

pub const PLUGIN: &str = "aggregate";
/// Says whether every leg answered (`false`: the body has `_errors`).
pub const COMPLETE_HEADER: &str = "x-aggregate-complete";
/// On an endpoint with a cache: `hit` (answered from it) or `miss`.
pub const CACHE_HEADER: &str = "x-aggregate-cache";

#[derive(Debug)]
pub struct AggregatePlugin<H: Host> {
    host: H,
    config: Config,
    metrics: Metrics<H>,
    /// The answers of endpoints with a cache, by endpoint index (this worker's).
    caches: RefCell<HashMap<usize, Cache>>,
}

impl<H: Host> AggregatePlugin<H> {
    /// The stage over a parsed configuration (the bundle parses its section itself).
    pub fn new(host: H, config: Config) -> Self {
        let metrics = Metrics::define(&host, config.binding.policies().map(|(_, e)| e));
        AggregatePlugin {
            host,
            config,
            metrics,
            caches: RefCell::new(HashMap::new()),
        }
    }

    /// The kept answer of endpoint `index` for `key`, if fresh.
    fn cached(&self, index: usize, key: &str) -> Option<Hit> {
        let now = self.host.now_ms();
        (self.caches.borrow_mut().get_mut(&index)).and_then(|c| c.get(key, now))
    }

    /// Keeps a complete answer of endpoint `index`.
    fn keep(&self, index: usize, key: String, body: &str) {
        let Some(policy) = self.config.binding.policy(index).and_then(|e| e.cache) else {
            return;
        };
        let now = self.host.now_ms();
        let mut caches = self.caches.borrow_mut();
        let cache = caches.entry(index).or_insert_with(|| Cache::new(policy));
        cache.put(key, body, now);
    }

    /// What a request must read of its route for the stage to choose its endpoint.
    pub fn route_needs(&self) -> Needs {
        self.config.binding.needs()
    }
}

impl<H: Host> Plugin for AggregatePlugin<H> {
    type Host = H;
    type Http = AggregateHttp<H>;
    const NAME: &'static str = PLUGIN;

    fn configure(host: H, config: &[u8]) -> Result<Self, ConfigError> {
        Ok(AggregatePlugin::new(host, Config::parse(config)?))
    }

    fn flush(&self) {
        self.metrics.flush();
    }

    fn http_context(self: &Rc<Self>, _context_id: u32) -> AggregateHttp<H> {
        AggregateHttp {
            plugin: Rc::clone(self),
            request: None,
        }
    }
}

/// One request: `None` until (and unless) its route names an endpoint.
#[derive(Debug)]
pub struct AggregateHttp<H: Host> {
    plugin: Rc<AggregatePlugin<H>>,
    request: Option<Request>,
}

#[derive(Debug)]
struct Request {
    endpoint: usize,
    aggregation: Aggregation,
    request_id: Option<String>,
    /// Set when the endpoint caches and the request may be answered from it.
    cache_key: Option<String>,
}

/// Whether a request may be answered from a cache (and its answer kept): a GET or HEAD that
/// does not ask for a fresh answer.
fn cacheable(headers: &HeaderMap) -> bool {
    let read = matches!(headers.get(":method"), Some("GET" | "HEAD"));
    let fresh = (headers.get_all("cache-control"))
        .any(|v| v.contains("no-cache") || v.contains("no-store"));
    read && !fresh
}

impl<H: Host> AggregateHttp<H> {
    fn endpoint(&self, index: usize) -> Option<&Endpoint> {
        self.plugin.config.binding.policy(index)
    }

    /// Dispatches every leg; a leg Envoy refuses to send fails at once.
    fn start(&mut self, index: usize, headers: &HeaderMap) -> Action {
        let p = Rc::clone(&self.plugin);
        let Some(endpoint) = p.config.binding.policy(index) else {
            return Action::Continue;
        };
        let metrics = p.metrics.endpoint(index);
        if let Some(m) = metrics {
            m.requests.inc();
        }
        let calls: Vec<_> = (endpoint.legs.iter())
            .map(|leg| (leg, call_headers(leg, headers)))
            .collect();
        let cache_key =
            (endpoint.cache.is_some() && cacheable(headers)).then(|| cache::key(&calls));
        if let Some(key) = &cache_key {
            if let Some(hit) = p.cached(index, key) {
                if let Some(m) = metrics {
                    m.cache_hits.inc();
                }
                answer_hit(&p.host, &hit);
                return Action::Pause;
            }
            if let Some(m) = metrics {
                m.cache_misses.inc();
            }
        }
        let now = p.host.now_ms();
        self.request = Some(Request {
            endpoint: index,
            aggregation: Aggregation::new(endpoint, now),
            request_id: headers.get("x-request-id").map(str::to_string),
            cache_key,
        });
        for (i, (leg, call)) in calls.into_iter().enumerate() {
            // A required leg that could not be sent has answered the request already.
            if !self
                .request
                .as_ref()
                .is_some_and(|r| r.aggregation.is_open())
            {
                break;
            }
            let call: Vec<(&str, &str)> =
                call.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let timeout = Duration::from_millis(leg.timeout_ms);
            match p.host.http_call(&leg.cluster, &call, None, timeout) {
                Ok(token) => {
                    if let Some(r) = &mut self.request {
                        r.aggregation.dispatched(i, token, now);
                    }
                }
                Err(e) => {
                    let why = format!(
                        "leg {:?} of {:?}: cannot call cluster {:?}: {e}",
                        leg.name, endpoint.name, leg.cluster
                    );
                    host::log(&p.host, PLUGIN, Level::Warn, &why);
                    self.leg_done(i, Err(Failure::Unroutable), 0, 0);
                }
            }
        }
        Action::Pause
    }

    /// Records a leg's end (`bytes` kept, after `ms`) and answers when that decides the request.
    fn leg_done(
        &mut self,
        leg: usize,
        result: Result<serde_json::Value, Failure>,
        bytes: usize,
        ms: u64,
    ) {
        let p = Rc::clone(&self.plugin);
        let Some(r) = &mut self.request else {
            return;
        };
        let Some(endpoint) = p.config.binding.policy(r.endpoint) else {
            return;
        };
        p.metrics.leg(
            r.endpoint,
            leg,
            result.as_ref().map(drop).map_err(|f| *f),
            ms,
        );
        let next = r.aggregation.finish(endpoint, leg, result, bytes);
        let elapsed = p.host.now_ms().saturating_sub(r.aggregation.started_ms);
        let (index, request_id) = (r.endpoint, r.request_id.clone());
        match next {
            Next::Wait => {}
            Next::Answer(composed) => {
                let key = (composed.complete).then(|| r.cache_key.take()).flatten();
                self.answer(index, &composed, elapsed, key);
            }
            Next::Fail(leg, failure) => {
                let name = endpoint.legs.get(leg).map_or("", |l| l.name.as_str());
                self.fail(index, name, failure, request_id.as_deref(), elapsed);
            }
        }
    }

    /// Sends the composed answer; `cache_key`: keep it (a complete answer of a caching endpoint).
    fn answer(&self, index: usize, composed: &Composed, elapsed_ms: u64, key: Option<String>) {
        let p = &self.plugin;
        if let Some(m) = p.metrics.endpoint(index) {
            m.latency.record(elapsed_ms);
            if composed.complete {
                &m.complete
            } else {
                &m.partial
            }
            .inc();
        }
        let body = composed.body.to_string();
        let mut headers = vec![
            ("content-type", "application/json"),
            (
                COMPLETE_HEADER,
                if composed.complete { "true" } else { "false" },
            ),
        ];
        if !composed.complete {
            // A partial answer is not the endpoint's answer: no cache may keep it.
            headers.push(("cache-control", "no-store"));
        }
        let cached = p
            .config
            .binding
            .policy(index)
            .is_some_and(|e| e.cache.is_some());
        if cached {
            headers.push((CACHE_HEADER, "miss"));
        }
        p.host.send_response(200, &headers, Some(body.as_bytes()));
        if let Some(key) = key {
            p.keep(index, key, &body);
        }
    }

    fn fail(
        &self,
        index: usize,
        leg: &str,
        failure: Failure,
        request_id: Option<&str>,
        elapsed_ms: u64,
    ) {
        let p = &self.plugin;
        if let Some(m) = p.metrics.endpoint(index) {
            m.latency.record(elapsed_ms);
            m.failed.inc();
        }
        let status = failure.http_status();
        let error = if status == 504 {
            "gateway_timeout"
        } else {
            "bad_gateway"
        };
        let message = format!("the required leg {leg:?} failed: {}", failure.describe());
        let (name, detail) = failure.field();
        let fields = [("leg", serde_json::Value::from(leg)), (name, detail)];
        p.host
            .send_json_error_with(status, error, &message, &fields, request_id, &[]);
    }

    /// Reads a leg's answer (its body only when its head passes) and checks it.
    fn read_answer(
        &self,
        leg: usize,
        sent_ms: u64,
        body_size: usize,
    ) -> (Result<serde_json::Value, Failure>, usize, u64) {
        let host = &self.plugin.host;
        let elapsed_ms = host.now_ms().saturating_sub(sent_ms);
        let Some(r) = &self.request else {
            return (Err(Failure::Reset), 0, elapsed_ms);
        };
        let Some(spec) = self.endpoint(r.endpoint).and_then(|e| e.legs.get(leg)) else {
            return (Err(Failure::Reset), 0, elapsed_ms);
        };
        let headers = host.headers(Map::CallResponseHeaders);
        let head = Head {
            status: headers.get(":status").and_then(|s| s.parse().ok()),
            content_encoding: headers.get("content-encoding"),
            body_size,
            elapsed_ms,
        };
        if let Err(failure) = check_head(spec, &head, r.aggregation.room()) {
            return (Err(failure), 0, elapsed_ms);
        }
        let body = match body_size {
            0 => Vec::new(),
            n => host
                .buffer(Buffer::CallResponseBody, 0, n)
                .unwrap_or_default(),
        };
        (read_body(spec, &body), body.len(), elapsed_ms)
    }
}

impl<H: Host> AggregateHttp<H> {
    /// Starts the aggregation when `route` names an endpoint (Pause: the stage answers the
    /// request); Continue otherwise. The bundle calls it with the route facts it read for all
    /// its stages.
    pub fn start_on(&mut self, route: &RouteFacts) -> Action {
        let p = Rc::clone(&self.plugin);
        match p.config.binding.select(route) {
            Bound::Chosen(Choice::Policy(index)) => {
                let headers = p.host.headers(Map::RequestHeaders);
                self.start(index, &headers)
            }
            Bound::Invalid(why) => {
                let headers = p.host.headers(Map::RequestHeaders);
                Refusal::invalid(PLUGIN, &why).send(&p.host, headers.get("x-request-id"));
                Action::Pause
            }
            // Aggregation is opt-in per route: anything else goes on untouched.
            Bound::Chosen(Choice::Reserved(_)) | Bound::Unbound | Bound::Exempt => Action::Continue,
        }
    }
}

/// A kept answer: as it was sent, with its age.
fn answer_hit<H: Host>(host: &H, hit: &Hit) {
    let age = hit.age_s.to_string();
    let headers = [
        ("content-type", "application/json"),
        (COMPLETE_HEADER, "true"),
        (CACHE_HEADER, "hit"),
        ("age", age.as_str()),
    ];
    host.send_response(200, &headers, Some(hit.body.as_bytes()));
}

impl<H: Host> HttpFilter for AggregateHttp<H> {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let route = RouteFacts::read(&self.plugin.host, self.plugin.route_needs());
        self.start_on(&route)
    }

    /// An aggregated request's body is not read, and never reaches an upstream.
    fn on_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.request.is_some() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_request_trailers(&mut self) -> Action {
        self.on_request_body(0, true)
    }

    fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        let waiting = (self.request.as_ref()).and_then(|r| r.aggregation.waiting(token));
        let Some((leg, sent_ms)) = waiting else {
            return;
        };
        let (result, bytes, ms) = self.read_answer(leg, sent_ms, body_size);
        self.leg_done(leg, result, bytes, ms);
    }

    fn on_done(&mut self) {
        if let Some(r) = self.request.as_ref().filter(|r| r.aggregation.is_open()) {
            if let Some(m) = self.plugin.metrics.endpoint(r.endpoint) {
                m.abandoned.inc();
            }
        }
    }
}
