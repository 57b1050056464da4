//! The body state machine, callback by callback, in hold and stream mode.

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
