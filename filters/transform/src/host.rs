//! The host side of transform (wasm32 only): the counters and [`TransformRequest`], one
//! request's state across its phases (the rule, captured values, body buffering). Header edits
//! are returned for the caller to write — to the host (the plugin, `filter`) or to an in-VM
//! copy of the headers (bundles that run transform as one stage of several). Bodies are read
//! and rewritten here.
//!
//! Bodies: Envoy turns `Action::Pause` from a headers callback into
//! `StopAllIterationAndWatermark`, which also withholds the body callbacks, so headers cannot be
//! held while the body is buffered. The headers callback therefore continues, having removed
//! `content-length` (the rewritten body has another length; Envoy re-frames the message, chunked
//! on HTTP/1.1), and the body callbacks pause (`StopIterationAndBuffer`) until end of stream.

use crate::{
    BodyOutcome, BodyPlan, Captured, HeaderEdit, RequestEdits, RuleRef, SkipReason, Transformer,
};
use filter_core::wasm::{BatchedCounter, Counter};
use filter_core::HeaderMap;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType};

/// The name the plugin logs under.
pub const PLUGIN: &str = "transform";
/// How often the batched counters reach the host ([`TransformMetrics::flush`]).
pub const METRICS_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

/// The per-request counters are batched in the VM and flushed on the root tick (a host call
/// per tick instead of up to three per request); the body counters go to the host at once.
pub struct TransformMetrics {
    rules_matched: BatchedCounter,
    headers_rewritten: BatchedCounter,
    bodies_rewritten: Counter,
    skipped_encoded: Counter,
    skipped_oversize: Counter,
    skipped_invalid_json: Counter,
    skipped_not_json: Counter,
}

impl TransformMetrics {
    /// Defines the counters (once per VM, from the root context).
    pub fn define() -> Self {
        TransformMetrics {
            rules_matched: BatchedCounter::define("transform_rules_matched"),
            headers_rewritten: BatchedCounter::define("transform_headers_rewritten"),
            bodies_rewritten: Counter::define("transform_bodies_rewritten"),
            skipped_encoded: Counter::define("transform_bodies_skipped_encoded"),
            skipped_oversize: Counter::define("transform_bodies_skipped_oversize"),
            skipped_invalid_json: Counter::define("transform_bodies_skipped_invalid_json"),
            skipped_not_json: Counter::define("transform_bodies_skipped_not_json"),
        }
    }

    /// Hands the batched counts to the host (the root tick).
    pub fn flush(&self) {
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

/// Body state of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Buffering {
    #[default]
    Off,
    /// The body is being buffered to be rewritten at end of stream.
    On,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    fn body(self) -> BufferType {
        match self {
            Direction::Request => BufferType::HttpRequestBody,
            Direction::Response => BufferType::HttpResponseBody,
        }
    }
}

/// What the response-headers phase of a request needs ([`TransformRequest::response_needs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseNeeds {
    /// No response rule applies: nothing to do.
    Nothing,
    /// Edits that do not depend on the response headers (no host read needed).
    Blind,
    /// The response headers (current values or the body's content type).
    Headers,
}

/// One request's transform state across its phases.
#[derive(Debug, Default)]
pub struct TransformRequest {
    rule: Option<RuleRef>,
    captured: Captured,
    request_body: Buffering,
    response_body: Buffering,
}

impl TransformRequest {
    /// The request-headers phase: the edits to write to the request headers (the rule's, the
    /// new `:path`, and `content-length`'s removal when the body is buffered).
    pub fn on_request_headers(
        &mut self,
        t: &Transformer,
        metrics: &TransformMetrics,
        headers: &HeaderMap,
        end_of_stream: bool,
    ) -> Vec<HeaderEdit> {
        self.accept_plan(t.request_plan(headers), metrics, end_of_stream)
    }

    /// The same from a plan already made ([`Transformer::request_plan`]).
    pub fn accept_plan(
        &mut self,
        plan: RequestEdits,
        metrics: &TransformMetrics,
        end_of_stream: bool,
    ) -> Vec<HeaderEdit> {
        let Some(rule) = plan.rule else {
            return Vec::new();
        };
        self.rule = Some(rule);
        if let RuleRef::Rule(_) = rule {
            metrics.rules_matched.inc();
        }
        if plan.rewrites_headers() {
            metrics.headers_rewritten.inc();
        }
        let mut edits = plan.headers;
        if let Some(path) = plan.path {
            edits.push(HeaderEdit::Set(":path".to_string(), path));
        }
        self.captured = plan.captured;
        self.request_body = start_body(plan.body, end_of_stream, metrics, &mut edits);
        edits
    }

    /// Whether and how the response-headers phase has work.
    pub fn response_needs(&self, t: &Transformer) -> ResponseNeeds {
        let Some(actions) = self.rule.and_then(|r| t.actions(r)) else {
            return ResponseNeeds::Nothing;
        };
        match self.rule {
            _ if actions.response_headers.is_empty() && actions.response_body.is_none() => {
                ResponseNeeds::Nothing
            }
            Some(rule) if t.response_needs_headers(rule) => ResponseNeeds::Headers,
            _ => ResponseNeeds::Blind,
        }
    }

    /// The response-headers phase: the edits to write to the response headers. `response` is
    /// required when [`Self::response_needs`] says [`ResponseNeeds::Headers`].
    pub fn on_response_headers(
        &mut self,
        t: &Transformer,
        metrics: &TransformMetrics,
        response: Option<&HeaderMap>,
        end_of_stream: bool,
    ) -> Vec<HeaderEdit> {
        let needs = self.response_needs(t);
        let Some(rule) = self.rule.filter(|_| needs != ResponseNeeds::Nothing) else {
            return Vec::new();
        };
        let response = response.filter(|_| needs == ResponseNeeds::Headers);
        let plan = t.response_plan(rule, &self.captured, response);
        if !plan.headers.is_empty() {
            metrics.headers_rewritten.inc();
        }
        let mut edits = plan.headers;
        self.response_body = start_body(plan.body, end_of_stream, metrics, &mut edits);
        edits
    }

    /// A body followed by trailers never reports end of stream: let it through untouched.
    pub fn on_trailers(&mut self, direction: Direction) {
        self.stop(direction);
    }

    fn stop(&mut self, direction: Direction) {
        match direction {
            Direction::Request => self.request_body = Buffering::Off,
            Direction::Response => self.response_body = Buffering::Off,
        }
    }

    /// Body phase: keep buffering, give up (too large), or rewrite at end of stream.
    pub fn on_body(
        &mut self,
        t: &Transformer,
        metrics: &TransformMetrics,
        direction: Direction,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let state = match direction {
            Direction::Request => self.request_body,
            Direction::Response => self.response_body,
        };
        let (Buffering::On, Some(rule)) = (state, self.rule) else {
            return Action::Continue;
        };
        if body_size > t.max_body_bytes() {
            metrics.skipped(SkipReason::Oversize);
            self.stop(direction);
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.stop(direction);
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
        let Ok(Some(body)) = hostcalls::get_buffer(direction.body(), 0, body_size) else {
            return Action::Continue;
        };
        match t.rewrite_json(ops, &body) {
            BodyOutcome::Unchanged => {}
            BodyOutcome::Invalid(_) => metrics.skipped(SkipReason::InvalidJson),
            BodyOutcome::Rewritten(out) => {
                let _ = hostcalls::set_buffer(direction.body(), 0, body_size, &out);
                metrics.bodies_rewritten.inc();
            }
        }
        Action::Continue
    }
}

/// Headers phase of a direction with body operations: decide whether to buffer. When
/// buffering, `content-length` goes (see the module comment).
fn start_body(
    plan: BodyPlan,
    end_of_stream: bool,
    metrics: &TransformMetrics,
    edits: &mut Vec<HeaderEdit>,
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
                edits.push(HeaderEdit::Remove("content-length".to_string()));
            }
            Buffering::On
        }
    }
}
