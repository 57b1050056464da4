//! What became of one leg: its answer checked in two steps, before its body is copied into the
//! VM ([`check_head`]: status, encoding, sizes) and after ([`read_body`]: body operations, JSON,
//! target), or why it failed ([`Failure`]).

use crate::config::Leg;
use serde_json::Value;
use transform::json_path::{JsonPath, Step};
use transform::BodyOutcome;

/// Why a leg failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The leg answered with a status that is not 2xx (Envoy's own 503 when the cluster's
    /// hosts cannot be reached).
    Status(u16),
    /// No answer within the leg's `timeout_ms`.
    Timeout,
    /// The call was reset before an answer (no status).
    Reset,
    /// Envoy refused to send the call: in practice a cluster it does not know.
    Unroutable,
    /// A `content-encoding` other than identity (the stage asks for identity).
    Encoded,
    /// Larger than the leg's `max_body_bytes`.
    TooLarge,
    /// Would take the bodies together past the endpoint's `max_total_bytes`.
    TotalTooLarge,
    /// Not one valid JSON document (RFC 8259).
    InvalidJson,
    /// The body has no value at `target`.
    NoTarget,
    /// A leg merged into the root answered with something other than an object.
    NotAnObject,
}

/// Every [`Failure::reason`] (the failure counters, one per reason).
pub const REASONS: [&str; 10] = [
    "status",
    "timeout",
    "reset",
    "unroutable",
    "encoded",
    "too_large",
    "total_too_large",
    "invalid_json",
    "no_target",
    "not_an_object",
];

impl Failure {
    /// The `reason` of its `_errors` entry and its metric name (none for a status).
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Status(_) => "status",
            Failure::Timeout => "timeout",
            Failure::Reset => "reset",
            Failure::Unroutable => "unroutable",
            Failure::Encoded => "encoded",
            Failure::TooLarge => "too_large",
            Failure::TotalTooLarge => "total_too_large",
            Failure::InvalidJson => "invalid_json",
            Failure::NoTarget => "no_target",
            Failure::NotAnObject => "not_an_object",
        }
    }

    /// `"status": 503` or `"reason": "timeout"`, for `_errors` and the error body.
    pub fn field(self) -> (&'static str, Value) {
        match self {
            Failure::Status(status) => ("status", Value::from(status)),
            other => ("reason", Value::from(other.reason())),
        }
    }

    /// The status a failed required leg answers the request with.
    pub fn http_status(self) -> u32 {
        if self == Failure::Timeout {
            504
        } else {
            502
        }
    }

    /// For the error message.
    pub fn describe(self) -> String {
        match self {
            Failure::Status(status) => format!("answered {status}"),
            other => other.reason().replace('_', " "),
        }
    }
}

/// The head of a leg's answer, as the host hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    /// `:status` (`None`: no answer, the call failed).
    pub status: Option<u16>,
    pub content_encoding: Option<&'a str>,
    pub body_size: usize,
    /// Since the call was dispatched.
    pub elapsed_ms: u64,
}

/// How much earlier than `timeout_ms` Envoy's own timeout may seem to fire, measured with the
/// host's clock in whole milliseconds: Envoy's timers run on the event loop's coarser clock
/// (seen in CI: Envoy's 504 for a 300 ms leg timeout was taken for an upstream's 504, i.e. it was
/// read as arriving under 299 ms). An upstream's own 504 within this
/// margin of the deadline is reported as the timeout it nearly was.
const TIMER_SLACK_MS: u64 = 10;

/// Whether the body of an answer is worth copying into the VM: `Ok` when it is, within the
/// leg's limit and `room` (what is left of the endpoint's `max_total_bytes`).
///
/// Envoy answers a call that ran out of time with its own 504 (or no status at all); a 504 or
/// a missing status once the leg's timeout has (nearly) passed is that timeout.
pub fn check_head(leg: &Leg, head: &Head<'_>, room: usize) -> Result<(), Failure> {
    let timed_out = head.elapsed_ms.saturating_add(TIMER_SLACK_MS) >= leg.timeout_ms;
    match head.status {
        None if timed_out => return Err(Failure::Timeout),
        None => return Err(Failure::Reset),
        Some(504) if timed_out => return Err(Failure::Timeout),
        Some(s) if !(200..300).contains(&s) => return Err(Failure::Status(s)),
        Some(_) => {}
    }
    let encoded = head
        .content_encoding
        .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
    if encoded {
        return Err(Failure::Encoded);
    }
    if head.body_size > leg.max_body_bytes {
        return Err(Failure::TooLarge);
    }
    if head.body_size > room {
        return Err(Failure::TotalTooLarge);
    }
    Ok(())
}

/// A leg's body (already checked by [`check_head`]) as the value that goes into the answer:
/// the body operations applied, then `target` selected. An empty body (a 204) is `null`.
pub fn read_body(leg: &Leg, body: &[u8]) -> Result<Value, Failure> {
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        parse(leg, body)?
    };
    let value = match &leg.target {
        None => value,
        Some(path) => select(value, path).ok_or(Failure::NoTarget)?,
    };
    if leg.placement == crate::config::Placement::Merge && !value.is_object() {
        return Err(Failure::NotAnObject);
    }
    Ok(value)
}

fn parse(leg: &Leg, body: &[u8]) -> Result<Value, Failure> {
    let rewritten = match &leg.ops {
        None => None,
        Some(ops) => match ops.rewrite(body) {
            BodyOutcome::Unchanged => None,
            BodyOutcome::Rewritten(bytes) => Some(bytes),
            BodyOutcome::Invalid(_) => return Err(Failure::InvalidJson),
        },
    };
    serde_json::from_slice(rewritten.as_deref().unwrap_or(body)).map_err(|_| Failure::InvalidJson)
}

/// The value at `path` (keys and indices only: the configuration refuses `[*]`).
fn select(mut value: Value, path: &JsonPath) -> Option<Value> {
    for step in &path.steps {
        value = match (step, value) {
            (Step::Key(k), Value::Object(mut members)) => members.remove(k)?,
            (Step::Index(i), Value::Array(mut items)) if *i < items.len() => items.swap_remove(*i),
            _ => return None,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn leg(extra: &str) -> Leg {
        let config = format!(
            r#"{{"endpoints": {{"e": {{"max_leg_bytes": 100, "legs": [{{"name": "a", "cluster": "c", "path": "/", "timeout_ms": 300 {extra}}}]}}}}}}"#
        );
        let config = Config::parse(config.as_bytes()).unwrap();
        config.binding.policy(0).unwrap().legs[0].clone()
    }

    fn head(status: Option<u16>, encoding: Option<&str>, size: usize, elapsed: u64) -> Head<'_> {
        Head {
            status,
            content_encoding: encoding,
            body_size: size,
            elapsed_ms: elapsed,
        }
    }

    #[test]
    fn heads_fail_on_status_time_encoding_and_size() {
        let l = leg("");
        assert_eq!(check_head(&l, &head(Some(200), None, 100, 5), 100), Ok(()));
        assert_eq!(
            check_head(&l, &head(Some(204), Some("identity"), 0, 5), 0),
            Ok(())
        );
        let fail = |h: Head<'_>, room| check_head(&l, &h, room).unwrap_err();
        assert_eq!(fail(head(Some(500), None, 0, 5), 9), Failure::Status(500));
        assert_eq!(fail(head(Some(504), None, 0, 5), 9), Failure::Status(504));
        assert_eq!(fail(head(Some(504), None, 0, 300), 9), Failure::Timeout);
        assert_eq!(fail(head(None, None, 0, 299), 9), Failure::Timeout);
        assert_eq!(fail(head(Some(504), None, 0, 292), 9), Failure::Timeout);
        assert_eq!(fail(head(None, None, 0, 10), 9), Failure::Reset);
        assert_eq!(
            fail(head(Some(200), Some("gzip"), 5, 5), 9),
            Failure::Encoded
        );
        assert_eq!(fail(head(Some(200), None, 101, 5), 999), Failure::TooLarge);
        assert_eq!(
            fail(head(Some(200), None, 50, 5), 49),
            Failure::TotalTooLarge
        );
        assert_eq!(Failure::Timeout.http_status(), 504);
        assert_eq!(Failure::Status(503).http_status(), 502);
        assert_eq!(Failure::Status(503).field(), ("status", json!(503)));
        assert_eq!(Failure::TooLarge.field(), ("reason", json!("too_large")));
        let all = [
            Failure::Status(500),
            Failure::Timeout,
            Failure::Reset,
            Failure::Unroutable,
            Failure::Encoded,
            Failure::TooLarge,
            Failure::TotalTooLarge,
            Failure::InvalidJson,
            Failure::NoTarget,
            Failure::NotAnObject,
        ];
        assert_eq!(all.map(Failure::reason), REASONS);
    }

    #[test]
    fn bodies_are_rewritten_then_selected() {
        let l = leg(
            r#", "target": "data.items[1]", "body": {"strip": ["data.items[*].secret"], "rename": {"data.items[*].n": "name"}}"#,
        );
        let body = br#"{"data": {"items": [{"n": 1, "secret": 2}, {"n": 3, "secret": 4}]}}"#;
        assert_eq!(read_body(&l, body), Ok(json!({"name": 3})));
        assert_eq!(read_body(&l, br#"{"data": {}}"#), Err(Failure::NoTarget));
        assert_eq!(read_body(&l, b"{\"data\": "), Err(Failure::InvalidJson));
        assert_eq!(read_body(&l, b" \n"), Err(Failure::NoTarget));
        let plain = leg("");
        assert_eq!(read_body(&plain, b""), Ok(Value::Null));
        assert_eq!(read_body(&plain, b"[1, 2]"), Ok(json!([1, 2])));
        assert_eq!(read_body(&plain, b"<html>"), Err(Failure::InvalidJson));
        assert_eq!(read_body(&plain, b"{} {}"), Err(Failure::InvalidJson));
        let merged = leg(r#", "merge": true"#);
        assert_eq!(read_body(&merged, b"[1]"), Err(Failure::NotAnObject));
        assert_eq!(read_body(&merged, b"{\"k\": 1}"), Ok(json!({"k": 1})));
    }
}
