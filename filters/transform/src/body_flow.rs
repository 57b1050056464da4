//! The body state machine of one direction: what each body or trailers callback does (keep
//! buffering, rewrite, let through, or refuse), decided without host calls so the fail-closed
//! rules are tested natively. [`crate::host`] carries the steps out.
//!
//! A rule's body operations on a *response* are a security control (`strip: ["password_hash"]`):
//! a response body the filter cannot rewrite (encoded, not JSON, over `max_body_bytes`, invalid
//! JSON, followed by trailers) is refused unless the rule opts into `on_unprocessable: "pass"`.
//! Request bodies that cannot be rewritten are forwarded unchanged.
//!
//! How a response is refused depends on [`ResponseHeadersMode`]:
//! - `hold` (default): the response headers are held until the body is known to be rewritable,
//!   and a refused response is replaced whole by the 502 ([`BodyStep::Refuse`]). Envoy honours
//!   the hold only with the Wasm filter's `allow_on_headers_stop_iteration: true`.
//! - `stream`: the headers are never held. A body the headers already show to be unprocessable
//!   turns the response into the 502 right there (its headers replaced, see [`error_headers`]);
//!   one found unprocessable later (invalid JSON, too large while buffering, trailers) has its
//!   buffered bytes dropped and replaced by the same JSON error body ([`BodyStep::Replace`]),
//!   under the status and headers the upstream sent, which are on their way to the client.
//!   Body callbacks hold every byte until then, so none of the body has left the proxy.

use crate::config::{OnUnprocessable, ResponseHeadersMode};
use crate::transformer::{BodyPlan, SkipReason};
use filter_core::{HeaderEdit, HeaderMap};

/// What a direction does with a body it cannot rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyPolicy {
    pub on_unprocessable: OnUnprocessable,
    pub mode: ResponseHeadersMode,
}

impl BodyPolicy {
    /// Request bodies that cannot be rewritten are forwarded unchanged.
    pub const PASS: BodyPolicy = BodyPolicy {
        on_unprocessable: OnUnprocessable::Pass,
        mode: ResponseHeadersMode::Hold,
    };
}

/// Body state of one direction between callbacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyState {
    /// Nothing (more) to do: callbacks continue.
    #[default]
    Off,
    /// Buffering to rewrite at end of stream; `seen` bytes are buffered so far.
    Buffering { seen: usize },
    /// (hold) The body cannot be rewritten and the rule fails closed: only an empty body may pass.
    MustBeEmpty(SkipReason),
    /// (stream) The body is being replaced by the error body: every byte is dropped, the error
    /// body is written at the end. `held`: a body callback has held data, so Envoy keeps a body
    /// buffer that the trailers callback may write to.
    Replacing { held: bool },
    /// The message was replaced by the local reply (or reset): nothing of it may continue.
    Refused,
}

/// What one callback does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStep {
    /// Let the message through; nothing more to do.
    Continue,
    /// Let the body through untouched, counted under the reason (`on_unprocessable: "pass"`).
    Skip(SkipReason),
    /// Keep buffering (for a response in hold mode, its headers stay held too).
    Hold,
    /// End of stream: read the buffered body and rewrite it (then [`BodyState::unprocessable`]
    /// if that fails).
    Rewrite,
    /// (hold) Replace the response with the 502, counted under the reason.
    Refuse(SkipReason),
    /// (stream) Drop the `buffered` bytes. At the `end` (end of stream, trailers) the JSON error
    /// body takes their place and the message continues; before it the filter keeps holding.
    /// `refused`: the refusal is decided now (count and log it).
    Replace {
        refused: Option<SkipReason>,
        buffered: usize,
        end: bool,
    },
}

/// What the headers phase of a direction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyStart {
    pub state: BodyState,
    /// `content-length` must go: the rewritten body has another length.
    pub remove_content_length: bool,
    /// The body passes untouched for this reason (count it).
    pub skipped: Option<SkipReason>,
    /// (stream) The headers show the body cannot be rewritten: the response becomes the 502
    /// now ([`error_headers`]; its body is replaced by the error body). Count it as refused.
    pub refused: Option<SkipReason>,
}

impl BodyStart {
    /// From the headers' plan, in hold mode. A message that ends with its headers has no body
    /// to act on.
    pub fn new(plan: BodyPlan, end_of_stream: bool) -> BodyStart {
        let (state, remove_content_length, skipped) = match plan {
            _ if end_of_stream => (BodyState::Off, false, None),
            BodyPlan::None => (BodyState::Off, false, None),
            BodyPlan::Skip(reason) => (BodyState::Off, false, Some(reason)),
            BodyPlan::Refuse(reason) => (BodyState::MustBeEmpty(reason), false, None),
            BodyPlan::Buffer { content_length } => {
                (BodyState::Buffering { seen: 0 }, content_length, None)
            }
        };
        BodyStart {
            state,
            remove_content_length,
            skipped,
            refused: None,
        }
    }

    /// The same for `mode`. In stream mode the headers cannot wait for the body: a body the
    /// plan refuses is refused now.
    pub fn with_mode(plan: BodyPlan, end_of_stream: bool, mode: ResponseHeadersMode) -> BodyStart {
        match (plan, mode) {
            (BodyPlan::Refuse(reason), ResponseHeadersMode::Stream) if !end_of_stream => {
                BodyStart {
                    state: BodyState::Replacing { held: false },
                    remove_content_length: false,
                    skipped: None,
                    refused: Some(reason),
                }
            }
            _ => BodyStart::new(plan, end_of_stream),
        }
    }
}

impl BodyState {
    /// Whether the response headers must be held (not forwarded) while this state lasts, so
    /// that a 502 can still replace the response (hold mode only).
    pub fn holds_headers(self) -> bool {
        !matches!(self, BodyState::Off)
    }

    /// A body callback: `body_size` bytes are buffered so far.
    pub fn on_data(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        max_body_bytes: usize,
        policy: BodyPolicy,
    ) -> BodyStep {
        match *self {
            BodyState::Off => BodyStep::Continue,
            BodyState::Refused => BodyStep::Hold,
            BodyState::MustBeEmpty(reason) if body_size > 0 => {
                *self = BodyState::Refused;
                BodyStep::Refuse(reason)
            }
            BodyState::MustBeEmpty(_) if end_of_stream => {
                *self = BodyState::Off;
                BodyStep::Continue
            }
            BodyState::MustBeEmpty(_) => BodyStep::Hold,
            BodyState::Replacing { .. } => {
                self.replace_from_here(end_of_stream);
                BodyStep::Replace {
                    refused: None,
                    buffered: body_size,
                    end: end_of_stream,
                }
            }
            BodyState::Buffering { .. } if body_size > max_body_bytes => {
                self.unprocessable(SkipReason::Oversize, policy, body_size, end_of_stream)
            }
            BodyState::Buffering { .. } if !end_of_stream => {
                *self = BodyState::Buffering { seen: body_size };
                BodyStep::Hold
            }
            BodyState::Buffering { .. } => {
                *self = BodyState::Off;
                if body_size == 0 {
                    BodyStep::Continue
                } else {
                    BodyStep::Rewrite
                }
            }
        }
    }

    /// Trailers: the body never reports end of stream, and is not rewritten. A buffered
    /// non-empty body is unprocessable.
    pub fn on_trailers(&mut self, policy: BodyPolicy) -> BodyStep {
        match *self {
            BodyState::Off => BodyStep::Continue,
            BodyState::Refused => BodyStep::Hold,
            // Any byte would have been refused already.
            BodyState::MustBeEmpty(_) | BodyState::Buffering { seen: 0 } => {
                *self = BodyState::Off;
                BodyStep::Continue
            }
            // No body callback held data: Envoy has no body buffer to write the error body
            // into. The response (already the 502) ends without a body.
            BodyState::Replacing { held: false } => {
                *self = BodyState::Off;
                BodyStep::Continue
            }
            // Everything held so far was dropped.
            BodyState::Replacing { held: true } => {
                *self = BodyState::Off;
                BodyStep::Replace {
                    refused: None,
                    buffered: 0,
                    end: true,
                }
            }
            BodyState::Buffering { seen } => {
                self.unprocessable(SkipReason::Trailers, policy, seen, true)
            }
        }
    }

    /// The body cannot be rewritten for `reason`: refuse it or let it pass, as `policy` says.
    /// `buffered` bytes are held; `end`: no more body will come (end of stream, trailers).
    pub fn unprocessable(
        &mut self,
        reason: SkipReason,
        policy: BodyPolicy,
        buffered: usize,
        end: bool,
    ) -> BodyStep {
        match (policy.on_unprocessable, policy.mode) {
            (OnUnprocessable::Pass, _) => {
                *self = BodyState::Off;
                BodyStep::Skip(reason)
            }
            (OnUnprocessable::Reject, ResponseHeadersMode::Hold) => {
                *self = BodyState::Refused;
                BodyStep::Refuse(reason)
            }
            (OnUnprocessable::Reject, ResponseHeadersMode::Stream) => {
                self.replace_from_here(end);
                BodyStep::Replace {
                    refused: Some(reason),
                    buffered,
                    end,
                }
            }
        }
    }

    /// After a [`BodyStep::Replace`]: done at the end, else the callback held data.
    fn replace_from_here(&mut self, end: bool) {
        *self = if end {
            BodyState::Off
        } else {
            BodyState::Replacing { held: true }
        };
    }
}

/// `error` of the JSON error body.
pub const ERROR: &str = "bad_gateway";
/// `message` of the JSON error body: nothing of the upstream or of the rule.
pub const ERROR_MESSAGE: &str = "the upstream response could not be processed";

/// The JSON error body of a refused response, as `filter_core::Host::send_json_error` writes
/// it for the 502 local reply.
pub fn error_body(request_id: Option<&str>) -> Vec<u8> {
    serde_json::json!({
        "error": ERROR,
        "message": ERROR_MESSAGE,
        "request_id": request_id.unwrap_or(""),
    })
    .to_string()
    .into_bytes()
}

/// (stream) The edits that turn a response's headers into the 502's: every header the upstream
/// sent goes (nothing of it reaches the client, as with the hold mode's local reply), then
/// `:status: 502` and `content-type: application/json`. Without `content-length` Envoy frames
/// the error body itself.
pub fn error_headers(response: Option<&HeaderMap>) -> Vec<HeaderEdit> {
    let mut edits: Vec<HeaderEdit> = Vec::new();
    for (name, _) in response.into_iter().flat_map(HeaderMap::iter) {
        let remove = HeaderEdit::Remove(name.to_ascii_lowercase());
        if !name.starts_with(':') && !edits.contains(&remove) {
            edits.push(remove);
        }
    }
    edits.push(HeaderEdit::Set(":status".to_string(), "502".to_string()));
    edits.push(HeaderEdit::Set(
        "content-type".to_string(),
        "application/json".to_string(),
    ));
    edits
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 100;
    /// Hold mode (the default), refusing.
    const REJECT: BodyPolicy = BodyPolicy {
        on_unprocessable: OnUnprocessable::Reject,
        mode: ResponseHeadersMode::Hold,
    };
    const PASS: BodyPolicy = BodyPolicy::PASS;
    /// Stream mode, refusing.
    const STREAM: BodyPolicy = BodyPolicy {
        on_unprocessable: OnUnprocessable::Reject,
        mode: ResponseHeadersMode::Stream,
    };
    /// Stream mode, passing.
    const STREAM_PASS: BodyPolicy = BodyPolicy {
        on_unprocessable: OnUnprocessable::Pass,
        mode: ResponseHeadersMode::Stream,
    };

    fn buffering() -> BodyState {
        BodyStart::new(
            BodyPlan::Buffer {
                content_length: true,
            },
            false,
        )
        .state
    }

    /// Feeds `(body_size, end_of_stream)` callbacks and collects the steps.
    fn run(mut state: BodyState, policy: BodyPolicy, calls: &[(usize, bool)]) -> Vec<BodyStep> {
        calls
            .iter()
            .map(|&(size, eos)| state.on_data(size, eos, MAX, policy))
            .collect()
    }

    fn replace(refused: Option<SkipReason>, buffered: usize, end: bool) -> BodyStep {
        BodyStep::Replace {
            refused,
            buffered,
            end,
        }
    }

    #[test]
    fn headers_start_the_state() {
        let start = BodyStart::new(
            BodyPlan::Buffer {
                content_length: true,
            },
            false,
        );
        assert_eq!(start.state, BodyState::Buffering { seen: 0 });
        assert!(start.remove_content_length && start.state.holds_headers());
        let refuse = BodyStart::new(BodyPlan::Refuse(SkipReason::Encoded), false);
        assert_eq!(refuse.state, BodyState::MustBeEmpty(SkipReason::Encoded));
        assert!(!refuse.remove_content_length && refuse.state.holds_headers());
        assert_eq!(refuse.refused, None, "hold mode decides on the first byte");
        let skip = BodyStart::new(BodyPlan::Skip(SkipReason::NotJson), false);
        assert_eq!(
            (skip.state, skip.skipped),
            (BodyState::Off, Some(SkipReason::NotJson))
        );
        assert!(!skip.state.holds_headers());
        // Headers-only messages (HEAD, 204, 304, content-length: 0) have nothing to refuse.
        for plan in [
            BodyPlan::Refuse(SkipReason::Oversize),
            BodyPlan::Buffer {
                content_length: true,
            },
        ] {
            for mode in [ResponseHeadersMode::Hold, ResponseHeadersMode::Stream] {
                let start = BodyStart::with_mode(plan, true, mode);
                assert_eq!(
                    (start.state, start.remove_content_length, start.refused),
                    (BodyState::Off, false, None)
                );
            }
        }
    }

    #[test]
    fn stream_mode_refuses_from_the_headers_or_buffers_like_hold() {
        let start = BodyStart::with_mode(
            BodyPlan::Refuse(SkipReason::Encoded),
            false,
            ResponseHeadersMode::Stream,
        );
        assert_eq!(start.state, BodyState::Replacing { held: false });
        assert_eq!(start.refused, Some(SkipReason::Encoded));
        assert_eq!(start.skipped, None);
        // Hold mode is unchanged by with_mode.
        for plan in [
            BodyPlan::Refuse(SkipReason::Encoded),
            BodyPlan::Skip(SkipReason::NotJson),
            BodyPlan::None,
            BodyPlan::Buffer {
                content_length: true,
            },
        ] {
            assert_eq!(
                BodyStart::with_mode(plan, false, ResponseHeadersMode::Hold),
                BodyStart::new(plan, false)
            );
        }
        // Buffering and skipping do not depend on the mode.
        for plan in [
            BodyPlan::Skip(SkipReason::NotJson),
            BodyPlan::Buffer {
                content_length: true,
            },
        ] {
            assert_eq!(
                BodyStart::with_mode(plan, false, ResponseHeadersMode::Stream),
                BodyStart::new(plan, false)
            );
        }
    }

    #[test]
    fn a_fitting_body_is_held_then_rewritten() {
        for policy in [REJECT, STREAM] {
            assert_eq!(
                run(
                    buffering(),
                    policy,
                    &[(10, false), (60, false), (100, true)]
                ),
                [BodyStep::Hold, BodyStep::Hold, BodyStep::Rewrite]
            );
            assert_eq!(
                run(buffering(), policy, &[(0, true)]),
                [BodyStep::Continue],
                "an empty body passes"
            );
        }
    }

    #[test]
    fn an_oversize_body_is_refused_unless_the_rule_passes_it() {
        let mut state = buffering();
        assert_eq!(
            run(state, REJECT, &[(60, false), (101, false), (150, true)]),
            [
                BodyStep::Hold,
                BodyStep::Refuse(SkipReason::Oversize),
                BodyStep::Hold
            ],
            "nothing continues after the refusal"
        );
        assert_eq!(
            run(state, PASS, &[(101, false), (150, true)]),
            [BodyStep::Skip(SkipReason::Oversize), BodyStep::Continue]
        );
        assert_eq!(
            run(state, STREAM_PASS, &[(101, false), (150, true)]),
            [BodyStep::Skip(SkipReason::Oversize), BodyStep::Continue]
        );
        state.on_data(101, false, MAX, REJECT);
        assert_eq!(state, BodyState::Refused);
        assert!(state.holds_headers());
    }

    /// Stream mode: the headers are gone, so the body is dropped as soon as it is too large,
    /// every later byte is dropped too, and the error body is written at the end.
    #[test]
    fn stream_mode_replaces_an_oversize_body() {
        assert_eq!(
            run(
                buffering(),
                STREAM,
                &[(60, false), (101, false), (30, false), (5, true)]
            ),
            [
                BodyStep::Hold,
                replace(Some(SkipReason::Oversize), 101, false),
                replace(None, 30, false),
                replace(None, 5, true),
            ]
        );
        // Too large in the last callback: dropped and replaced at once.
        let mut state = buffering();
        assert_eq!(
            state.on_data(150, true, MAX, STREAM),
            replace(Some(SkipReason::Oversize), 150, true)
        );
        assert_eq!(state, BodyState::Off);
        assert_eq!(state.on_data(10, true, MAX, STREAM), BodyStep::Continue);
    }

    #[test]
    fn stream_mode_replaces_a_body_refused_from_the_headers() {
        let start = BodyStart::with_mode(
            BodyPlan::Refuse(SkipReason::NotJson),
            false,
            ResponseHeadersMode::Stream,
        );
        // Every byte is dropped (even an empty end), the error body is written at the end.
        assert_eq!(
            run(start.state, STREAM, &[(0, false), (7, false), (0, true)]),
            [
                replace(None, 0, false),
                replace(None, 7, false),
                replace(None, 0, true),
            ]
        );
        assert_eq!(
            run(start.state, STREAM, &[(9, true)]),
            [replace(None, 9, true)],
            "the refusal was counted from the headers, not again"
        );
    }

    #[test]
    fn an_unprocessable_body_must_be_empty() {
        let must = BodyState::MustBeEmpty(SkipReason::NotJson);
        assert_eq!(
            run(must, REJECT, &[(0, false), (1, false), (5, true)]),
            [
                BodyStep::Hold,
                BodyStep::Refuse(SkipReason::NotJson),
                BodyStep::Hold
            ]
        );
        assert_eq!(
            run(must, REJECT, &[(0, false), (0, true)]),
            [BodyStep::Hold, BodyStep::Continue]
        );
    }

    #[test]
    fn a_body_with_trailers_is_unprocessable() {
        let mut state = buffering();
        state.on_data(20, false, MAX, REJECT);
        assert_eq!(
            state.on_trailers(REJECT),
            BodyStep::Refuse(SkipReason::Trailers)
        );
        assert_eq!(state.on_trailers(REJECT), BodyStep::Hold);
        let mut state = buffering();
        state.on_data(20, false, MAX, PASS);
        assert_eq!(
            state.on_trailers(PASS),
            BodyStep::Skip(SkipReason::Trailers)
        );
        assert_eq!(state, BodyState::Off);
        // Trailers after an empty body (or none at all) pass.
        assert_eq!(buffering().on_trailers(REJECT), BodyStep::Continue);
        assert_eq!(buffering().on_trailers(STREAM), BodyStep::Continue);
        assert_eq!(
            BodyState::MustBeEmpty(SkipReason::Encoded).on_trailers(REJECT),
            BodyStep::Continue
        );
        assert_eq!(BodyState::Off.on_trailers(REJECT), BodyStep::Continue);
    }

    #[test]
    fn stream_mode_replaces_a_body_followed_by_trailers() {
        let mut state = buffering();
        state.on_data(20, false, MAX, STREAM);
        assert_eq!(
            state.on_trailers(STREAM),
            replace(Some(SkipReason::Trailers), 20, true),
            "the 20 held bytes are replaced"
        );
        assert_eq!(state, BodyState::Off);
        // Refused from the headers: what was held is already dropped; without any held data
        // Envoy has no body buffer to write to, and the 502 ends without a body.
        let mut held = BodyState::Replacing { held: false };
        held.on_data(4, false, MAX, STREAM);
        assert_eq!(held, BodyState::Replacing { held: true });
        assert_eq!(held.on_trailers(STREAM), replace(None, 0, true));
        assert_eq!(
            BodyState::Replacing { held: false }.on_trailers(STREAM),
            BodyStep::Continue
        );
    }

    #[test]
    fn a_failed_rewrite_follows_the_policy() {
        let mut state = BodyState::Off;
        assert_eq!(
            state.unprocessable(SkipReason::InvalidJson, REJECT, 10, true),
            BodyStep::Refuse(SkipReason::InvalidJson)
        );
        assert_eq!(state, BodyState::Refused);
        let mut state = BodyState::Off;
        assert_eq!(
            state.unprocessable(SkipReason::InvalidJson, PASS, 10, true),
            BodyStep::Skip(SkipReason::InvalidJson)
        );
        assert_eq!(state, BodyState::Off);
        let mut state = BodyState::Off;
        assert_eq!(
            state.unprocessable(SkipReason::InvalidJson, STREAM, 10, true),
            replace(Some(SkipReason::InvalidJson), 10, true),
            "stream mode: the whole body is replaced by the error body"
        );
        assert_eq!(state, BodyState::Off);
    }

    #[test]
    fn policy_values_are_strict() {
        let parse = |s: &str| serde_json::from_str::<OnUnprocessable>(s);
        assert_eq!(parse(r#""reject""#).unwrap(), OnUnprocessable::Reject);
        assert_eq!(parse(r#""pass""#).unwrap(), OnUnprocessable::Pass);
        assert!(parse(r#""Pass""#).is_err());
        assert!(parse(r#""allow""#)
            .unwrap_err()
            .to_string()
            .contains("expected `reject` or `pass`"));
        assert_eq!(OnUnprocessable::default(), OnUnprocessable::Reject);
        let mode = |s: &str| serde_json::from_str::<ResponseHeadersMode>(s);
        assert_eq!(mode(r#""hold""#).unwrap(), ResponseHeadersMode::Hold);
        assert_eq!(mode(r#""stream""#).unwrap(), ResponseHeadersMode::Stream);
        for bad in [r#""Stream""#, r#""streaming""#, "true", r#""""#] {
            assert!(mode(bad).is_err(), "{bad}");
        }
        assert!(mode(r#""buffer""#)
            .unwrap_err()
            .to_string()
            .contains("expected `hold` or `stream`"));
        assert_eq!(ResponseHeadersMode::default(), ResponseHeadersMode::Hold);
    }

    #[test]
    fn the_error_body_is_the_gateways_json_error() {
        let body: serde_json::Value = serde_json::from_slice(&error_body(Some("req-1"))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "bad_gateway",
                "message": "the upstream response could not be processed",
                "request_id": "req-1",
            })
        );
        let body: serde_json::Value = serde_json::from_slice(&error_body(None)).unwrap();
        assert_eq!(body["request_id"], "");
    }

    #[test]
    fn error_headers_drop_everything_the_upstream_sent() {
        let response = HeaderMap::new(
            [
                (":status", "200"),
                ("content-type", "text/html"),
                ("content-encoding", "gzip"),
                ("content-length", "42"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("x-secret-hint", "v"),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        );
        let mut out = response.clone();
        for edit in error_headers(Some(&response)) {
            edit.apply_to(&mut out);
        }
        let mut pairs: Vec<(&str, &str)> = out.iter().collect();
        pairs.sort_unstable();
        assert_eq!(
            pairs,
            [(":status", "502"), ("content-type", "application/json")]
        );
        assert_eq!(
            error_headers(None),
            [
                HeaderEdit::Set(":status".into(), "502".into()),
                HeaderEdit::Set("content-type".into(), "application/json".into()),
            ]
        );
    }
}
