//! Why a filter refused a request, for the gateway's audit log: the refusing filter and its own
//! reason code (`expired`, `bad_signature`, `scope`, `tenant_unresolved`, a limit's name ...)
//! are set as properties of the request's stream just before the local reply. Envoy keeps a
//! property a wasm filter sets as filter state named `wasm.<name>`, so an access log reads them
//! with `%FILTER_STATE(wasm.edgegate.audit.reason:PLAIN)%` (docs/security.md, "Audit log").
//!
//! Only fixed codes and configured names go here, never anything the client sent: a token, an
//! API key or a header value must never reach a log through this.

use crate::host::Host;

/// The filter that refused the request (`jwt_auth`, `tenant_cache_key`, `ratelimit`).
pub const FILTER: &str = "edgegate.audit.filter";
/// The refusing filter's reason code.
pub const REASON: &str = "edgegate.audit.reason";
/// The rate limit that refused the request (the ratelimit stage's limit name).
pub const LIMIT: &str = "edgegate.audit.limit";

/// Records that `filter` refuses the current request for `reason` (and, for a rate limit, the
/// `limit`'s name). One host call per property, made only on refusals.
pub fn record<H: Host>(host: &H, filter: &str, reason: &str, limit: Option<&str>) {
    host.set_property(&[FILTER], filter.as_bytes());
    host.set_property(&[REASON], reason.as_bytes());
    if let Some(limit) = limit {
        host.set_property(&[LIMIT], limit.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn recorded_as_properties_of_the_request() {
        let host = FakeHost::default();
        record(&host, "ratelimit", "rate_limited", Some("standard"));
        let set = host.state().properties_set.clone();
        assert_eq!(
            set,
            [
                (0, FILTER.to_string(), b"ratelimit".to_vec()),
                (0, REASON.to_string(), b"rate_limited".to_vec()),
                (0, LIMIT.to_string(), b"standard".to_vec()),
            ]
        );
    }
}
