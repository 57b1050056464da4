//! The host side of transform, over any [`Host`]: the counters and [`TransformRequest`], one
//! request's state across its phases (the rule, captured values, body buffering). Header edits
//! are returned for the caller to write — to the host ([`crate::plugin`], with
//! [`Host::write_edits`]) or to an in-VM copy of the headers (bundles that run transform as one
//! stage of several). Bodies are read and rewritten here, and the 502 is sent from here.
//!
//! Bodies: while a body may be rewritten, the headers phase removes `content-length` (the
//! rewritten body has another length; Envoy re-frames the message, chunked on HTTP/1.1) and the
//! body callbacks pause (`StopIterationAndBuffer`) until end of stream. On the response side the
//! headers are held too ([`TransformRequest::holds_response_headers`]: the glue returns
//! [`Action::Pause`]), so that a body that turns out not to be rewritable can still be replaced by
//! a 502 ([`crate::body_flow`]). Envoy only honours that pause as `StopIteration` when the Wasm
//! filter's `allow_on_headers_stop_iteration` is true; without it the pause becomes
//! `StopAllIterationAndWatermark`, the body callbacks never run, and such responses stall.
//!
//! With `response_headers_mode: "stream"` (for hosts that cannot set that flag) the response
//! headers are never held: a response refused from its headers has them replaced by the 502's
//! right away, and a body refused later is dropped from Envoy's buffer and replaced by the JSON
//! error body (`set_buffer`) under the upstream's status. Should the body buffer refuse the
//! write, the stream is reset: the unrewritten body never goes on.

use crate::body_flow::{
    error_body, error_headers, BodyPolicy, BodyStart, BodyState, BodyStep, ERROR, ERROR_MESSAGE,
};
use crate::config::ResponseHeadersMode;
use crate::json_rewrite::BodyOutcome;
use crate::metrics;
use crate::template::Captured;
use crate::transformer::{RequestEdits, RuleRef, SkipReason, Transformer};
use filter_core::host::{log, Action, BatchedCounter, Buffer, Counter, Host, Level};
use filter_core::{HeaderEdit, HeaderMap};

/// The name the plugin logs under.
pub const PLUGIN: &str = "transform";

/// The per-request counters are batched in the VM and flushed on the root tick
/// ([`filter_core::plugin::TICK`]: a host call per tick instead of up to three per request); the
/// body counters go to the host at once.
#[derive(Debug)]
pub struct TransformMetrics<H: Host> {
    rules_matched: BatchedCounter<H>,
    headers_rewritten: BatchedCounter<H>,
    bodies_rewritten: Counter<H>,
    /// `transform.bodies_skipped.<reason>`: passed untouched.
    skipped: ReasonCounters<H>,
    /// `transform.bodies_refused.<reason>`: replaced by a 502 (fail closed).
    refused: ReasonCounters<H>,
}

/// One counter per [`SkipReason`].
#[derive(Debug)]
struct ReasonCounters<H: Host> {
    not_json: Counter<H>,
    encoded: Counter<H>,
    oversize: Counter<H>,
    invalid_json: Counter<H>,
    trailers: Counter<H>,
}

impl<H: Host> ReasonCounters<H> {
    fn define(host: &H, name: fn(&str) -> String) -> Self {
        let c = |reason: SkipReason| Counter::define(host, &name(reason.name()));
        ReasonCounters {
            not_json: c(SkipReason::NotJson),
            encoded: c(SkipReason::Encoded),
            oversize: c(SkipReason::Oversize),
            invalid_json: c(SkipReason::InvalidJson),
            trailers: c(SkipReason::Trailers),
        }
    }

    fn inc(&self, reason: SkipReason) {
        match reason {
            SkipReason::NotJson => self.not_json.inc(),
            SkipReason::Encoded => self.encoded.inc(),
            SkipReason::Oversize => self.oversize.inc(),
            SkipReason::InvalidJson => self.invalid_json.inc(),
            SkipReason::Trailers => self.trailers.inc(),
        }
    }
}

impl<H: Host> TransformMetrics<H> {
    /// Defines the counters (once per configuration, from the root context).
    pub fn define(host: &H) -> Self {
        TransformMetrics {
            rules_matched: BatchedCounter::define(host, metrics::RULES_MATCHED),
            headers_rewritten: BatchedCounter::define(host, metrics::HEADERS_REWRITTEN),
            bodies_rewritten: Counter::define(host, metrics::BODIES_REWRITTEN),
            skipped: ReasonCounters::define(host, metrics::bodies_skipped),
            refused: ReasonCounters::define(host, metrics::bodies_refused),
        }
    }

    /// Hands the batched counts to the host (the root tick).
    pub fn flush(&self) {
        self.rules_matched.flush();
        self.headers_rewritten.flush();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    fn body(self) -> Buffer {
        match self {
            Direction::Request => Buffer::RequestBody,
            Direction::Response => Buffer::ResponseBody,
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

/// One request's transform state across its phases, with the host handle its body reads and
/// writes, local replies and logs go through.
#[derive(Debug)]
pub struct TransformRequest<H: Host> {
    host: H,
    rule: Option<RuleRef>,
    captured: Captured,
    request_body: BodyState,
    response_body: BodyState,
    /// The response rule's `on_unprocessable` and the plugin's `response_headers_mode`, set in
    /// the response-headers phase.
    response_policy: BodyPolicy,
}

impl<H: Host> TransformRequest<H> {
    /// A request before its headers: no rule yet, nothing buffered.
    pub fn new(host: H) -> Self {
        TransformRequest {
            host,
            rule: None,
            captured: Captured::default(),
            request_body: BodyState::default(),
            response_body: BodyState::default(),
            response_policy: BodyPolicy::default(),
        }
    }

    /// The request-headers phase, from the plan of the request's rule
    /// ([`Transformer::request_plan_on`]): the edits to write to the request headers (the
    /// rule's, the new `:path`, `content-length`'s removal when the body is buffered,
    /// `accept-encoding`'s when the rule rewrites response bodies).
    pub fn accept_plan(
        &mut self,
        plan: RequestEdits,
        metrics: &TransformMetrics<H>,
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
        let start = BodyStart::new(plan.body, end_of_stream);
        self.request_body = start_body(start, metrics, &mut edits);
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
    /// required when [`Self::response_needs`] says [`ResponseNeeds::Headers`]. Afterwards the
    /// caller must hold the response headers when [`Self::holds_response_headers`] says so.
    pub fn on_response_headers(
        &mut self,
        t: &Transformer,
        metrics: &TransformMetrics<H>,
        response: Option<&HeaderMap>,
        end_of_stream: bool,
    ) -> Vec<HeaderEdit> {
        let needs = self.response_needs(t);
        let Some(rule) = self.rule.filter(|_| needs != ResponseNeeds::Nothing) else {
            return Vec::new();
        };
        let response = response.filter(|_| needs == ResponseNeeds::Headers);
        let plan = t.response_plan(rule, &self.captured, response);
        let mode = t.response_headers_mode();
        self.response_policy = BodyPolicy {
            on_unprocessable: plan.on_unprocessable,
            mode,
        };
        let start = BodyStart::with_mode(plan.body, end_of_stream, mode);
        if let Some(reason) = start.refused {
            // Stream mode, refused from the headers: the response becomes the 502 now (the
            // rule's header operations are for the upstream's response, not for this one).
            self.response_body = start.state;
            self.report(t, metrics, BodyStep::Refuse(reason), None);
            return error_headers(response);
        }
        if !plan.headers.is_empty() {
            metrics.headers_rewritten.inc();
        }
        let mut edits = plan.headers;
        self.response_body = start_body(start, metrics, &mut edits);
        edits
    }

    /// True while the response body may yet be refused in hold mode: the response headers must
    /// not reach the client yet (the glue answers the response-headers callback with
    /// `Action::Pause`; the body callbacks release them). Never in stream mode.
    pub fn holds_response_headers(&self) -> bool {
        self.response_policy.mode == ResponseHeadersMode::Hold && self.response_body.holds_headers()
    }

    /// Trailers: a body followed by trailers never reports end of stream and is not rewritten.
    /// A request body passes; a buffered response body is unprocessable ([`crate::body_flow`]):
    /// refused (counted and logged) unless the rule passes it.
    pub fn on_trailers_counted(
        &mut self,
        t: &Transformer,
        metrics: &TransformMetrics<H>,
        direction: Direction,
    ) -> Action {
        let policy = self.policy(direction);
        let step = self.state(direction).on_trailers(policy);
        self.report(t, metrics, step, None);
        carry_out(&self.host, step, self.captured.request_id())
    }

    /// [`Self::on_trailers_counted`] for callers without the transformer at hand: the same
    /// decision and reply, but the step is neither counted nor logged.
    pub fn on_trailers(&mut self, direction: Direction) -> Action {
        let policy = self.policy(direction);
        let step = self.state(direction).on_trailers(policy);
        carry_out(&self.host, step, self.captured.request_id())
    }

    fn state(&mut self, direction: Direction) -> &mut BodyState {
        match direction {
            Direction::Request => &mut self.request_body,
            Direction::Response => &mut self.response_body,
        }
    }

    fn policy(&self, direction: Direction) -> BodyPolicy {
        match direction {
            Direction::Request => BodyPolicy::PASS,
            Direction::Response => self.response_policy,
        }
    }

    /// Body phase: keep buffering, give up or refuse (too large), or rewrite at end of stream.
    pub fn on_body(
        &mut self,
        t: &Transformer,
        metrics: &TransformMetrics<H>,
        direction: Direction,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let policy = self.policy(direction);
        let step =
            self.state(direction)
                .on_data(body_size, end_of_stream, t.max_body_bytes(), policy);
        let (step, detail) = match (step, self.rule) {
            (BodyStep::Rewrite, Some(rule)) => self.rewrite(t, metrics, rule, direction, body_size),
            (BodyStep::Rewrite, None) => (BodyStep::Continue, None),
            (step, _) => (step, None),
        };
        self.report(t, metrics, step, detail.as_deref());
        carry_out(&self.host, step, self.captured.request_id())
    }

    /// Reads the complete body and writes the rewritten one. A body that cannot be rewritten
    /// (or read, or written back) is unprocessable; the detail is for the log.
    fn rewrite(
        &mut self,
        t: &Transformer,
        metrics: &TransformMetrics<H>,
        rule: RuleRef,
        direction: Direction,
        body_size: usize,
    ) -> (BodyStep, Option<String>) {
        let ops = match direction {
            Direction::Request => t.request_body_ops(rule),
            Direction::Response => t.response_body_ops(rule),
        };
        let Some(ops) = ops else {
            return (BodyStep::Continue, None);
        };
        let detail = match self.host.buffer(direction.body(), 0, body_size) {
            Some(body) => match t.rewrite_json(ops, &body) {
                BodyOutcome::Unchanged => return (BodyStep::Continue, None),
                BodyOutcome::Invalid(why) => {
                    format!("invalid at byte {}: {}", why.offset, why.reason)
                }
                BodyOutcome::Rewritten(out) => {
                    if self.host.set_buffer(direction.body(), 0, body_size, &out) {
                        metrics.bodies_rewritten.inc();
                        return (BodyStep::Continue, None);
                    }
                    "the rewritten body could not be written back".to_string()
                }
            },
            None => "the body could not be read".to_string(),
        };
        // Host read/write failures count as invalid JSON: the body is not usable as a document.
        let policy = self.policy(direction);
        let step =
            self.state(direction)
                .unprocessable(SkipReason::InvalidJson, policy, body_size, true);
        (step, Some(detail))
    }

    /// Counts a skip or a refusal, and logs a refusal (the reason, never body content).
    fn report(
        &self,
        t: &Transformer,
        metrics: &TransformMetrics<H>,
        step: BodyStep,
        detail: Option<&str>,
    ) {
        let (reason, what) = match step {
            BodyStep::Skip(reason) => return metrics.skipped.inc(reason),
            BodyStep::Refuse(reason) => (reason, "upstream response replaced by a 502"),
            BodyStep::Replace {
                refused: Some(reason),
                ..
            } => (
                reason,
                "upstream response body replaced by the error body (response_headers_mode \
                 stream: the upstream's status and headers were already sent)",
            ),
            BodyStep::Continue | BodyStep::Hold | BodyStep::Rewrite | BodyStep::Replace { .. } => {
                return
            }
        };
        metrics.refused.inc(reason);
        let rule = self.rule.map_or("", |r| t.rule_name(r));
        let why = match (reason, detail) {
            (SkipReason::Oversize, _) => {
                format!("{} ({} bytes)", reason.describe(), t.max_body_bytes())
            }
            (_, Some(detail)) => format!("{} ({detail})", reason.describe()),
            (_, None) => reason.describe().to_string(),
        };
        let message = format!("rule \"{rule}\": {what}: {why}");
        log(&self.host, PLUGIN, Level::Warn, &message);
    }
}

/// The host side of a step: the action to return, the 502 for a refusal, the body replacement
/// in stream mode.
fn carry_out<H: Host>(host: &H, step: BodyStep, request_id: Option<&str>) -> Action {
    match step {
        BodyStep::Continue | BodyStep::Skip(_) | BodyStep::Rewrite => Action::Continue,
        BodyStep::Hold => Action::Pause,
        BodyStep::Refuse(_) => {
            send_unprocessable_reply(host, request_id);
            Action::Pause
        }
        BodyStep::Replace {
            buffered: 0,
            end: false,
            ..
        } => Action::Pause,
        BodyStep::Replace { buffered, end, .. } => {
            let with = if end {
                error_body(request_id)
            } else {
                Vec::new()
            };
            match host.set_buffer(Direction::Response.body(), 0, buffered, &with) {
                true if end => Action::Continue,
                true => Action::Pause,
                false => {
                    // The body cannot be dropped: it must not go on either.
                    let message = "the response body could not be replaced: stream reset";
                    log(host, PLUGIN, Level::Warn, message);
                    host.reset_response();
                    Action::Pause
                }
            }
        }
    }
}

/// The 502 that replaces a response the rule cannot rewrite, shaped like the gateway's other
/// JSON errors; it names nothing of the upstream or of the rule. (`request_id` was captured in
/// the request phase: the request headers cannot be read from the response phase.)
fn send_unprocessable_reply<H: Host>(host: &H, request_id: Option<&str>) {
    host.send_json_error(502, ERROR, ERROR_MESSAGE, request_id, &[]);
}

/// Headers phase of a direction with body operations: starts the body state. When buffering,
/// `content-length` goes (see the module comment).
fn start_body<H: Host>(
    start: BodyStart,
    metrics: &TransformMetrics<H>,
    edits: &mut Vec<HeaderEdit>,
) -> BodyState {
    if let Some(reason) = start.skipped {
        metrics.skipped.inc(reason);
    }
    if start.remove_content_length {
        edits.push(HeaderEdit::Remove("content-length".to_string()));
    }
    start.state
}
