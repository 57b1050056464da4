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
//!
//! The 502's JSON error body and header edits are in `error_reply`.

use crate::config::{OnUnprocessable, ResponseHeadersMode};
use crate::transformer::{BodyPlan, SkipReason};

mod error_reply;
#[cfg(test)]
mod tests;

pub use error_reply::{error_body, error_headers, ERROR, ERROR_MESSAGE};

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
