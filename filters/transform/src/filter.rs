//! proxy-wasm glue: one header-map read per direction, the planned writes, body buffering.
//! Every decision comes from [`Transformer`]; this module only talks to the host.
//!
//! Bodies: Envoy turns `Action::Pause` from a headers callback into
//! `StopAllIterationAndWatermark`, which also withholds the body callbacks, so headers cannot be
//! held while the body is buffered. The headers callback therefore continues, having removed
//! `content-length` (the rewritten body has another length; Envoy re-frames the message, chunked
//! on HTTP/1.1), and the body callbacks pause (`StopIterationAndBuffer`) until end of stream.

use crate::{BodyOutcome, BodyPlan, Captured, HeaderEdit, RuleRef, SkipReason, Transformer};
use filter_core::wasm::{log_config_error, read_headers, BatchedCounter, Counter};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(TransformRoot::default()));
}}

/// The per-request counters are batched in the VM and flushed on the root tick (a host call
/// per tick instead of up to three per request); the body counters go to the host at once.
struct Metrics {
    rules_matched: BatchedCounter,
    headers_rewritten: BatchedCounter,
    bodies_rewritten: Counter,
    skipped_encoded: Counter,
    skipped_oversize: Counter,
    skipped_invalid_json: Counter,
    skipped_not_json: Counter,
}

impl Metrics {
    fn define() -> Self {
        Metrics {
            rules_matched: BatchedCounter::define("transform_rules_matched"),
            headers_rewritten: BatchedCounter::define("transform_headers_rewritten"),
            bodies_rewritten: Counter::define("transform_bodies_rewritten"),
            skipped_encoded: Counter::define("transform_bodies_skipped_encoded"),
            skipped_oversize: Counter::define("transform_bodies_skipped_oversize"),
            skipped_invalid_json: Counter::define("transform_bodies_skipped_invalid_json"),
            skipped_not_json: Counter::define("transform_bodies_skipped_not_json"),
        }
    }

    fn flush(&self) {
        self.rules_matched.flush();
        self.headers_rewritten.flush();
    }

    fn skipped(&self, reason: SkipReason) {
        match reason {
            SkipReason::NotJson => self.skipped_not_json.inc(),
            SkipReason::Encoded => self.skipped_encoded.inc(),
            SkipReason::Oversize => self.skipped_oversize.inc(),
            SkipReason::InvalidJson => self.skipped_invalid_json.inc(),
        }
    }
}

#[derive(Default)]
struct TransformRoot {
    transformer: Option<Rc<Transformer>>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for TransformRoot {}

/// How often the batched counters reach the host.
const METRICS_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

impl RootContext for TransformRoot {
    fn on_tick(&mut self) {
        if let Some(m) = &self.metrics {
            m.flush();
        }
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match Transformer::new(&config) {
            Ok(t) => {
                self.transformer = Some(Rc::new(t));
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
                    let _ = proxy_wasm::hostcalls::set_tick_period(METRICS_FLUSH);
                }
                true
            }
            Err(err) => {
                log_config_error("transform", &err);
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let active = match (&self.transformer, &self.metrics) {
            (Some(t), Some(m)) => Some((Rc::clone(t), Rc::clone(m))),
            _ => None,
        };
        Some(Box::new(TransformHttp {
            active,
            rule: None,
            captured: Captured::default(),
            request_body: Buffering::Off,
            response_body: Buffering::Off,
        }))
    }
}

/// Body state of one direction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Buffering {
    Off,
    /// The body is being buffered to be rewritten at end of stream.
    On,
}

struct TransformHttp {
    /// None when the plugin has no valid configuration (it then does nothing).
    active: Option<(Rc<Transformer>, Rc<Metrics>)>,
    rule: Option<RuleRef>,
    captured: Captured,
    request_body: Buffering,
    response_body: Buffering,
}

#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
}

impl Direction {
    fn headers(self) -> MapType {
        match self {
            Direction::Request => MapType::HttpRequestHeaders,
            Direction::Response => MapType::HttpResponseHeaders,
        }
    }
}

impl Context for TransformHttp {}

impl TransformHttp {
    fn apply(&self, direction: Direction, edits: &[HeaderEdit]) {
        let map = direction.headers();
        for edit in edits {
            let _ = match edit {
                HeaderEdit::Remove(name) => proxy_wasm::hostcalls::remove_map_value(map, name),
                HeaderEdit::Set(name, value) => {
                    proxy_wasm::hostcalls::set_map_value(map, name, Some(value))
                }
                HeaderEdit::Append(name, value) => {
                    proxy_wasm::hostcalls::add_map_value(map, name, value)
                }
            };
        }
    }

    /// Headers phase of a direction with body operations: decide whether to buffer. When
    /// buffering, `content-length` goes (see the module comment).
    fn start_body(
        &self,
        direction: Direction,
        plan: BodyPlan,
        end_of_stream: bool,
        metrics: &Metrics,
    ) -> Buffering {
        match plan {
            _ if end_of_stream => Buffering::Off,
            BodyPlan::None => Buffering::Off,
            BodyPlan::Skip(reason) => {
                metrics.skipped(reason);
                Buffering::Off
            }
            BodyPlan::Buffer { content_length } => {
                if content_length {
                    let _ = proxy_wasm::hostcalls::remove_map_value(
                        direction.headers(),
                        "content-length",
                    );
                }
                Buffering::On
            }
        }
    }

    /// Body phase: keep buffering, give up (too large), or rewrite at end of stream.
    fn on_body(&mut self, direction: Direction, body_size: usize, end_of_stream: bool) -> Action {
        let state = match direction {
            Direction::Request => self.request_body,
            Direction::Response => self.response_body,
        };
        let (Buffering::On, Some((t, metrics)), Some(rule)) = (state, &self.active, self.rule)
        else {
            return Action::Continue;
        };
        let (t, metrics) = (Rc::clone(t), Rc::clone(metrics));
        let stop = |this: &mut Self| match direction {
            Direction::Request => this.request_body = Buffering::Off,
            Direction::Response => this.response_body = Buffering::Off,
        };
        if body_size > t.max_body_bytes() {
            metrics.skipped(SkipReason::Oversize);
            stop(self);
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        stop(self);
        let ops = match direction {
            Direction::Request => t.request_body_ops(rule),
            Direction::Response => t.response_body_ops(rule),
        };
        let Some(ops) = ops else {
            return Action::Continue;
        };
        if body_size == 0 {
            return Action::Continue;
        }
        let body = match direction {
            Direction::Request => self.get_http_request_body(0, body_size),
            Direction::Response => self.get_http_response_body(0, body_size),
        };
        let Some(body) = body else {
            return Action::Continue;
        };
        match t.rewrite_json(ops, &body) {
            BodyOutcome::Unchanged => {}
            BodyOutcome::Invalid(_) => metrics.skipped(SkipReason::InvalidJson),
            BodyOutcome::Rewritten(out) => {
                match direction {
                    Direction::Request => self.set_http_request_body(0, body_size, &out),
                    Direction::Response => self.set_http_response_body(0, body_size, &out),
                }
                metrics.bodies_rewritten.inc();
            }
        }
        Action::Continue
    }
}

impl HttpContext for TransformHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some((t, metrics)) = &self.active else {
            return Action::Continue;
        };
        let (t, metrics) = (Rc::clone(t), Rc::clone(metrics));
        let headers = read_headers(MapType::HttpRequestHeaders);
        let plan = t.request_plan(&headers);
        let Some(rule) = plan.rule else {
            return Action::Continue;
        };
        self.rule = Some(rule);
        if let RuleRef::Rule(_) = rule {
            metrics.rules_matched.inc();
        }
        self.apply(Direction::Request, &plan.headers);
        if let Some(path) = &plan.path {
            let _ = proxy_wasm::hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                ":path",
                Some(path),
            );
        }
        if plan.rewrites_headers() {
            metrics.headers_rewritten.inc();
        }
        self.captured = plan.captured;
        self.request_body = self.start_body(Direction::Request, plan.body, end_of_stream, &metrics);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A body followed by trailers never reports end of stream: let it through untouched.
        self.request_body = Buffering::Off;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (Some((t, metrics)), Some(rule)) = (&self.active, self.rule) else {
            return Action::Continue;
        };
        let (t, metrics) = (Rc::clone(t), Rc::clone(metrics));
        let Some(actions) = t.actions(rule) else {
            return Action::Continue;
        };
        if actions.response_headers.is_empty() && actions.response_body.is_none() {
            return Action::Continue;
        }
        let plan = if t.response_needs_headers(rule) {
            let headers = read_headers(MapType::HttpResponseHeaders);
            t.response_plan(rule, &self.captured, Some(&headers))
        } else {
            t.response_plan(rule, &self.captured, None)
        };
        self.apply(Direction::Response, &plan.headers);
        if !plan.headers.is_empty() {
            metrics.headers_rewritten.inc();
        }
        self.response_body =
            self.start_body(Direction::Response, plan.body, end_of_stream, &metrics);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.response_body = Buffering::Off;
        Action::Continue
    }
}
