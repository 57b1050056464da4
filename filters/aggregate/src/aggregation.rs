//! One aggregated request, host-free: which legs are still out, what the others gave, and when
//! the request can be answered. The first failed required leg answers at once (502, or 504 for
//! a timeout); otherwise the answer waits for every leg and [`compose`]s their values.

use crate::config::{Endpoint, Placement, ERRORS_KEY};
use crate::outcome::Failure;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
enum LegState {
    /// Not dispatched yet.
    Idle,
    Waiting {
        token: u32,
        sent_ms: u64,
    },
    Done(Result<Value, Failure>),
}

/// What the stage does next for the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Legs are still out.
    Wait,
    /// Every leg is in (failed optional legs included): a 200 with the composed body.
    Answer(Composed),
    /// A required leg failed: its index and why.
    Fail(usize, Failure),
}

/// The answer built from the legs' values.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    pub body: Value,
    /// No leg failed (`_errors` is absent).
    pub complete: bool,
}

/// The legs of one request of an endpoint.
#[derive(Debug)]
pub struct Aggregation {
    legs: Vec<LegState>,
    /// What is left of the endpoint's `max_total_bytes`.
    room: usize,
    pub started_ms: u64,
    /// Answered (or failed): later answers are ignored.
    over: bool,
}

impl Aggregation {
    pub fn new(endpoint: &Endpoint, now_ms: u64) -> Self {
        Aggregation {
            legs: vec![LegState::Idle; endpoint.legs.len()],
            room: endpoint.max_total_bytes,
            started_ms: now_ms,
            over: false,
        }
    }

    pub fn dispatched(&mut self, leg: usize, token: u32, now_ms: u64) {
        if let Some(state) = self.legs.get_mut(leg) {
            *state = LegState::Waiting {
                token,
                sent_ms: now_ms,
            };
        }
    }

    /// The leg waiting for the call `token`, and when it was sent (`None` once answered).
    pub fn waiting(&self, token: u32) -> Option<(usize, u64)> {
        if self.over {
            return None;
        }
        self.legs.iter().enumerate().find_map(|(i, s)| match s {
            LegState::Waiting { token: t, sent_ms } if *t == token => Some((i, *sent_ms)),
            _ => None,
        })
    }

    /// Room left for bodies under the endpoint's `max_total_bytes`.
    pub fn room(&self) -> usize {
        self.room
    }

    /// Whether the request still waits for legs (not answered, not failed).
    pub fn is_open(&self) -> bool {
        !self.over
    }

    /// Records what became of `leg` (`bytes`: the size of the body it kept) and says what next.
    pub fn finish(
        &mut self,
        endpoint: &Endpoint,
        leg: usize,
        result: Result<Value, Failure>,
        bytes: usize,
    ) -> Next {
        if self.over || leg >= self.legs.len() {
            return Next::Wait;
        }
        if result.is_ok() {
            self.room = self.room.saturating_sub(bytes);
        }
        if let (Err(failure), Some(spec)) = (&result, endpoint.legs.get(leg)) {
            if spec.required {
                self.over = true;
                return Next::Fail(leg, *failure);
            }
        }
        self.legs[leg] = LegState::Done(result);
        self.next(endpoint)
    }

    /// [`Next::Wait`] while legs are out, else the answer.
    pub fn next(&mut self, endpoint: &Endpoint) -> Next {
        if self.over || !self.legs.iter().all(|s| matches!(s, LegState::Done(_))) {
            return Next::Wait;
        }
        self.over = true;
        let results = self.legs.iter().map(|s| match s {
            LegState::Done(r) => r.clone(),
            _ => Err(Failure::Reset),
        });
        Next::Answer(compose(endpoint, results))
    }
}

/// The answer's body: in leg order, each value under its member (its name or group; `null`
/// when it failed) or its members merged into the root (nothing when it failed), a later leg
/// replacing an earlier one's member of the same name; then `_errors` when a leg failed.
pub fn compose(
    endpoint: &Endpoint,
    results: impl IntoIterator<Item = Result<Value, Failure>>,
) -> Composed {
    let mut root = Map::new();
    let mut errors = Vec::new();
    for (leg, result) in endpoint.legs.iter().zip(results) {
        let value = match result {
            Ok(value) => value,
            Err(failure) => {
                let (field, detail) = failure.field();
                let mut entry = Map::new();
                entry.insert("leg".into(), Value::from(leg.name.as_str()));
                entry.insert(field.into(), detail);
                errors.push(Value::Object(entry));
                Value::Null
            }
        };
        match (&leg.placement, value) {
            (Placement::Member(key), value) => {
                root.insert(key.clone(), value);
            }
            (Placement::Merge, Value::Object(members)) => root.extend(members),
            (Placement::Merge, _) => {}
        }
    }
    let complete = errors.is_empty();
    if !complete {
        root.insert(ERRORS_KEY.into(), Value::Array(errors));
    }
    Composed {
        body: Value::Object(root),
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn endpoint() -> Endpoint {
        let config = Config::parse(
            br#"{"endpoints": {"e": {"max_total_bytes": 10, "max_leg_bytes": 10, "legs": [
                {"name": "user", "cluster": "c", "path": "/u", "required": true},
                {"name": "orders", "cluster": "c", "path": "/o", "group": "recent"},
                {"name": "stats", "cluster": "c", "path": "/s", "merge": true}
            ]}}}"#,
        )
        .unwrap();
        config.binding.policy(0).unwrap().clone()
    }

    #[test]
    fn values_go_under_names_groups_or_the_root() {
        let e = endpoint();
        let c = compose(
            &e,
            [
                Ok(json!({"id": 1})),
                Ok(json!([1, 2])),
                Ok(json!({"views": 3, "user": "shadowed"})),
            ],
        );
        assert!(c.complete);
        assert_eq!(
            c.body,
            json!({"user": "shadowed", "recent": [1, 2], "views": 3})
        );
    }

    #[test]
    fn failed_optional_legs_are_null_and_listed() {
        let e = endpoint();
        let c = compose(
            &e,
            [
                Ok(json!(1)),
                Err(Failure::Status(503)),
                Err(Failure::Timeout),
            ],
        );
        assert!(!c.complete);
        assert_eq!(
            c.body,
            json!({"user": 1, "recent": null, "_errors": [
                {"leg": "orders", "status": 503}, {"leg": "stats", "reason": "timeout"}
            ]})
        );
    }

    #[test]
    fn the_answer_waits_for_every_leg_and_a_required_failure_ends_it() {
        let e = endpoint();
        let mut a = Aggregation::new(&e, 100);
        for (leg, token) in [(0, 7), (1, 8), (2, 9)] {
            a.dispatched(leg, token, 100);
        }
        assert_eq!(a.waiting(8), Some((1, 100)));
        assert_eq!(a.finish(&e, 1, Ok(json!(1)), 4), Next::Wait);
        assert_eq!(a.room(), 6);
        assert_eq!(a.waiting(8), None, "answered");
        assert_eq!(a.finish(&e, 2, Err(Failure::TooLarge), 0), Next::Wait);
        let Next::Answer(c) = a.finish(&e, 0, Ok(json!(2)), 1) else {
            panic!("every leg is in");
        };
        assert!(!c.complete);
        assert!(!a.is_open());
        assert_eq!(a.finish(&e, 0, Ok(json!(2)), 1), Next::Wait, "over");

        let mut b = Aggregation::new(&e, 0);
        b.dispatched(0, 1, 0);
        b.dispatched(1, 2, 0);
        assert_eq!(
            b.finish(&e, 0, Err(Failure::Reset), 0),
            Next::Fail(0, Failure::Reset)
        );
        assert_eq!(b.waiting(2), None, "late answers are ignored");
    }
}
