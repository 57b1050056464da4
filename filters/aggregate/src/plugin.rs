//! The aggregate plugin over any [`Host`]: [`AggregatePlugin`] is a VM's state (the compiled
//! configuration and the counters), [`AggregateHttp`] one request. A request whose route names
//! an endpoint never reaches the router: its legs are dispatched at once from
//! `on_request_headers`, each answer is checked and kept, and the request is answered locally
//! when the last leg is in or a required leg failed. A route naming no endpoint passes untouched.
//!
//! A client that leaves ends the request's context; Envoy then cancels the calls still out.

use crate::aggregation::{Aggregation, Composed, Next};
use crate::config::{Config, Endpoint};
use crate::metrics::Metrics;
use crate::outcome::{check_head, read_body, Failure, Head};
use crate::request::call_headers;
use filter_core::host::{self, Buffer, Host, Level, Map};
use filter_core::route::{Bound, Choice, Refusal, RouteFacts};
use filter_core::{Action, ConfigError, HeaderMap, HttpFilter, Plugin};
use std::rc::Rc;
use std::time::Duration;

pub const PLUGIN: &str = "aggregate";
/// Says whether every leg answered (`false`: the body has `_errors`).
pub const COMPLETE_HEADER: &str = "x-aggregate-complete";

#[derive(Debug)]
pub struct AggregatePlugin<H: Host> {
    host: H,
    config: Config,
    metrics: Metrics<H>,
}

impl<H: Host> Plugin for AggregatePlugin<H> {
    type Host = H;
    type Http = AggregateHttp<H>;
    const NAME: &'static str = PLUGIN;

    fn configure(host: H, config: &[u8]) -> Result<Self, ConfigError> {
        let config = Config::parse(config)?;
        let metrics = Metrics::define(&host, config.binding.policies().map(|(_, e)| e));
        Ok(AggregatePlugin {
            host,
            config,
            metrics,
        })
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
        if let Some(m) = p.metrics.endpoint(index) {
            m.requests.inc();
        }
        let now = p.host.now_ms();
        self.request = Some(Request {
            endpoint: index,
            aggregation: Aggregation::new(endpoint, now),
            request_id: headers.get("x-request-id").map(str::to_string),
        });
        for (i, leg) in endpoint.legs.iter().enumerate() {
            // A required leg that could not be sent has answered the request already.
            if !self
                .request
                .as_ref()
                .is_some_and(|r| r.aggregation.is_open())
            {
                break;
            }
            let call = call_headers(leg, headers);
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
            Next::Answer(composed) => self.answer(index, &composed, elapsed),
            Next::Fail(leg, failure) => {
                let name = endpoint.legs.get(leg).map_or("", |l| l.name.as_str());
                self.fail(index, name, failure, request_id.as_deref(), elapsed);
            }
        }
    }

    fn answer(&self, index: usize, composed: &Composed, elapsed_ms: u64) {
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
        p.host.send_response(200, &headers, Some(body.as_bytes()));
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

impl<H: Host> HttpFilter for AggregateHttp<H> {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let p = Rc::clone(&self.plugin);
        let binding = &p.config.binding;
        let route = RouteFacts::read(&p.host, binding.needs());
        match binding.select(&route) {
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
