//! The body state machine of one direction: what each body or trailers callback does (keep
//! buffering, rewrite, let through, or refuse), decided without host calls so the fail-closed
//! rules are tested natively. [`crate::host`] carries the steps out.
//!
//! A rule's body operations on a *response* are a security control (`strip: ["password_hash"]`):
//! a response body the filter cannot rewrite (encoded, not JSON, over `max_body_bytes`, invalid
//! JSON, followed by trailers) is refused with a 502 unless the rule opts into
//! `on_unprocessable: "pass"`. Request bodies that cannot be rewritten are forwarded unchanged.

use crate::transformer::{BodyPlan, SkipReason};
use serde::Deserialize;

/// What a rule does with a response body it cannot rewrite (`response.body.on_unprocessable`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnprocessable {
    /// Replace the response with a 502 JSON error (fail closed). The default.
    #[default]
    Reject,
    /// Forward the body untouched (an explicit opt-in per rule).
    Pass,
}

/// Body state of one direction between callbacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyState {
    /// Nothing (more) to do: callbacks continue.
    #[default]
    Off,
    /// Buffering to rewrite at end of stream; `seen` bytes are buffered so far.
    Buffering { seen: usize },
    /// The body cannot be rewritten and the rule fails closed: only an empty body may pass.
    MustBeEmpty(SkipReason),
    /// The message was replaced by the local reply: nothing of it may continue.
    Refused,
}

/// What one callback does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStep {
    /// Let the message through; nothing more to do.
    Continue,
    /// Let the body through untouched, counted under the reason (`on_unprocessable: "pass"`).
    Skip(SkipReason),
    /// Keep buffering (for a response, its headers stay held too).
    Hold,
    /// End of stream: read the buffered body and rewrite it (then [`BodyState::unprocessable`]
    /// if that fails).
    Rewrite,
    /// Replace the response with the 502 (fail closed), counted under the reason.
    Refuse(SkipReason),
}

/// What the headers phase of a direction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyStart {
    pub state: BodyState,
    /// `content-length` must go: the rewritten body has another length.
    pub remove_content_length: bool,
    /// The body passes untouched for this reason (count it).
    pub skipped: Option<SkipReason>,
}

impl BodyStart {
    /// From the headers' plan. A message that ends with its headers has no body to act on.
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
        }
    }
}

impl BodyState {
    /// Whether the response headers must be held (not forwarded) while this state lasts, so
    /// that a 502 can still replace the response.
    pub fn holds_headers(self) -> bool {
        !matches!(self, BodyState::Off)
    }

    /// A body callback: `body_size` bytes are buffered so far.
    pub fn on_data(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        max_body_bytes: usize,
        policy: OnUnprocessable,
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
            BodyState::Buffering { .. } if body_size > max_body_bytes => {
                self.unprocessable(SkipReason::Oversize, policy)
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
    pub fn on_trailers(&mut self, policy: OnUnprocessable) -> BodyStep {
        match *self {
            BodyState::Off => BodyStep::Continue,
            BodyState::Refused => BodyStep::Hold,
            // Any byte would have been refused already.
            BodyState::MustBeEmpty(_) | BodyState::Buffering { seen: 0 } => {
                *self = BodyState::Off;
                BodyStep::Continue
            }
            BodyState::Buffering { .. } => self.unprocessable(SkipReason::Trailers, policy),
        }
    }

    /// The body cannot be rewritten for `reason`: refuse it or let it pass, as `policy` says.
    pub fn unprocessable(&mut self, reason: SkipReason, policy: OnUnprocessable) -> BodyStep {
        match policy {
            OnUnprocessable::Reject => {
                *self = BodyState::Refused;
                BodyStep::Refuse(reason)
            }
            OnUnprocessable::Pass => {
                *self = BodyState::Off;
                BodyStep::Skip(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OnUnprocessable::{Pass, Reject};

    const MAX: usize = 100;

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
    fn run(
        mut state: BodyState,
        policy: OnUnprocessable,
        calls: &[(usize, bool)],
    ) -> Vec<BodyStep> {
        calls
            .iter()
            .map(|&(size, eos)| state.on_data(size, eos, MAX, policy))
            .collect()
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
            let start = BodyStart::new(plan, true);
            assert_eq!(
                (start.state, start.remove_content_length),
                (BodyState::Off, false)
            );
        }
    }

    #[test]
    fn a_fitting_body_is_held_then_rewritten() {
        assert_eq!(
            run(
                buffering(),
                Reject,
                &[(10, false), (60, false), (100, true)]
            ),
            [BodyStep::Hold, BodyStep::Hold, BodyStep::Rewrite]
        );
        assert_eq!(
            run(buffering(), Reject, &[(0, true)]),
            [BodyStep::Continue],
            "an empty body passes"
        );
    }

    #[test]
    fn an_oversize_body_is_refused_unless_the_rule_passes_it() {
        let mut state = buffering();
        assert_eq!(
            run(state, Reject, &[(60, false), (101, false), (150, true)]),
            [
                BodyStep::Hold,
                BodyStep::Refuse(SkipReason::Oversize),
                BodyStep::Hold
            ],
            "nothing continues after the refusal"
        );
        assert_eq!(
            run(state, Pass, &[(101, false), (150, true)]),
            [BodyStep::Skip(SkipReason::Oversize), BodyStep::Continue]
        );
        state.on_data(101, false, MAX, Reject);
        assert_eq!(state, BodyState::Refused);
        assert!(state.holds_headers());
    }

    #[test]
    fn an_unprocessable_body_must_be_empty() {
        let must = BodyState::MustBeEmpty(SkipReason::NotJson);
        assert_eq!(
            run(must, Reject, &[(0, false), (1, false), (5, true)]),
            [
                BodyStep::Hold,
                BodyStep::Refuse(SkipReason::NotJson),
                BodyStep::Hold
            ]
        );
        assert_eq!(
            run(must, Reject, &[(0, false), (0, true)]),
            [BodyStep::Hold, BodyStep::Continue]
        );
    }

    #[test]
    fn a_body_with_trailers_is_unprocessable() {
        let mut state = buffering();
        state.on_data(20, false, MAX, Reject);
        assert_eq!(
            state.on_trailers(Reject),
            BodyStep::Refuse(SkipReason::Trailers)
        );
        assert_eq!(state.on_trailers(Reject), BodyStep::Hold);
        let mut state = buffering();
        state.on_data(20, false, MAX, Pass);
        assert_eq!(
            state.on_trailers(Pass),
            BodyStep::Skip(SkipReason::Trailers)
        );
        assert_eq!(state, BodyState::Off);
        // Trailers after an empty body (or none at all) pass.
        assert_eq!(buffering().on_trailers(Reject), BodyStep::Continue);
        assert_eq!(
            BodyState::MustBeEmpty(SkipReason::Encoded).on_trailers(Reject),
            BodyStep::Continue
        );
        assert_eq!(BodyState::Off.on_trailers(Reject), BodyStep::Continue);
    }

    #[test]
    fn a_failed_rewrite_follows_the_policy() {
        let mut state = BodyState::Off;
        assert_eq!(
            state.unprocessable(SkipReason::InvalidJson, Reject),
            BodyStep::Refuse(SkipReason::InvalidJson)
        );
        assert_eq!(state, BodyState::Refused);
        let mut state = BodyState::Off;
        assert_eq!(
            state.unprocessable(SkipReason::InvalidJson, Pass),
            BodyStep::Skip(SkipReason::InvalidJson)
        );
        assert_eq!(state, BodyState::Off);
    }

    #[test]
    fn on_unprocessable_values_are_strict() {
        let parse = |s: &str| serde_json::from_str::<OnUnprocessable>(s);
        assert_eq!(parse(r#""reject""#).unwrap(), Reject);
        assert_eq!(parse(r#""pass""#).unwrap(), Pass);
        assert!(parse(r#""Pass""#).is_err());
        assert!(parse(r#""allow""#)
            .unwrap_err()
            .to_string()
            .contains("expected `reject` or `pass`"));
        assert_eq!(OnUnprocessable::default(), Reject);
    }
}
