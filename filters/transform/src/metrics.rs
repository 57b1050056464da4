//! The metrics transform defines, named in the scheme every filter of this project uses:
//! `<filter>.<name>` (Envoy shows them as `wasmcustom.<filter>.<name>`).

/// Requests a rule matched.
pub const RULES_MATCHED: &str = "transform.rules_matched";
/// Requests or responses whose headers a rule changed.
pub const HEADERS_REWRITTEN: &str = "transform.headers_rewritten";
/// Bodies rewritten.
pub const BODIES_REWRITTEN: &str = "transform.bodies_rewritten";

/// Bodies passed untouched because they could not be rewritten, by reason (`not_json`,
/// `encoded`, `oversize`, `invalid_json`, `trailers`: [`crate::SkipReason::name`]).
pub fn bodies_skipped(reason: &str) -> String {
    format!("transform.bodies_skipped.{reason}")
}

/// Response bodies refused (replaced by the 502, fail closed), by reason.
pub fn bodies_refused(reason: &str) -> String {
    format!("transform.bodies_refused.{reason}")
}
