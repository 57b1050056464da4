//! What one leg's call looks like: its pseudo-headers, its path rendered from the client's
//! request (every substituted value percent-encoded), and the headers copied from the client.

use crate::config::Leg;
use filter_core::HeaderMap;
use std::borrow::Cow;
use transform::template::{RequestVars, Template, Var, VarSource};

/// The request id and trace context: forwarded by default, and one per request (so never part
/// of a cache key).
pub const TRACE_HEADERS: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// The identity the gateway verified (its owned headers: a client's forged copies are removed
/// before this stage).
pub const IDENTITY_HEADERS: &[&str] = &["x-user-id", "x-org-id", "x-tenant-id", "x-jwt-tenant"];

/// The headers a leg forwards unless it lists its own: [`TRACE_HEADERS`], then
/// [`IDENTITY_HEADERS`]. Never `authorization` or `cookie`.
pub fn default_forward() -> Vec<String> {
    (TRACE_HEADERS.iter().chain(IDENTITY_HEADERS))
        .map(|n| n.to_string())
        .collect()
}

/// Headers the stage writes itself or that describe the client's connection or body, which a
/// call does not have.
const NOT_FORWARDED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-connection",
    "accept",
    "accept-encoding",
    "expect",
];

/// Whether a header may be listed in `forward_headers` (lower-case), or why not.
pub fn check_forwarded(name: &str) -> Result<(), String> {
    if NOT_FORWARDED.contains(&name) {
        return Err(format!(
            "{name:?} is not forwarded: it belongs to the client's connection or the stage sets it"
        ));
    }
    Ok(())
}

/// Parses a leg's path template: it starts with `/` or `${path}`, and never copies the
/// client's credentials into a URL.
pub fn check_path_template(text: &str) -> Result<Template, String> {
    if !text.starts_with('/') && !text.starts_with("${path}") {
        return Err(format!("{text:?} must start with \"/\" or \"${{path}}\""));
    }
    let template = Template::parse(text)?;
    for var in template.vars() {
        if let Var::Header(name) = var {
            if name == "authorization" || name == "cookie" {
                return Err(format!(
                    "${{header.{name}}} would put the client's credentials in a URL"
                ));
            }
        }
    }
    Ok(template)
}

/// Template values for a URL: the client's path as it is (Envoy has checked it), every other
/// value percent-encoded but for `A-Z a-z 0-9 - _ ~`, so that a query parameter or header can
/// add neither a path segment, a `..`, a query parameter nor a line break.
struct UrlValues<'a>(RequestVars<'a>);

impl VarSource for UrlValues<'_> {
    fn lookup(&self, var: &Var) -> Cow<'_, str> {
        let value = self.0.lookup(var);
        match var {
            Var::Path => value,
            _ => Cow::Owned(percent_encode(&value)),
        }
    }
}

pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The headers of `leg`'s call for the client's `request`: `:method`, `:path`, `:authority`,
/// `accept`, `accept-encoding: identity`, then every forwarded header the client's request has
/// (all its values).
pub fn call_headers(leg: &Leg, request: &HeaderMap) -> Vec<(String, String)> {
    let path = leg.path.render(&UrlValues(RequestVars(request)));
    let mut headers = vec![
        (":method".to_string(), leg.method.clone()),
        (":path".to_string(), path),
        (":authority".to_string(), leg.authority.clone()),
        ("accept".to_string(), "application/json".to_string()),
        ("accept-encoding".to_string(), "identity".to_string()),
    ];
    for name in &leg.forward {
        for value in request.get_all(name) {
            headers.push((name.clone(), value.to_string()));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn leg(json: &str) -> Leg {
        let config = format!(r#"{{"endpoints": {{"e": {{"legs": [{json}]}}}}}}"#);
        let config = Config::parse(config.as_bytes()).unwrap();
        config.binding.policy(0).unwrap().legs[0].clone()
    }

    fn request() -> HeaderMap {
        HeaderMap::from([
            (":method", "GET"),
            (":path", "/api/dashboard?limit=5&id=..%2Fadmin&x=a%0d%0ab"),
            (":authority", "gw"),
            ("authorization", "Bearer secret"),
            ("cookie", "s=1"),
            ("x-user-id", "u-1"),
            ("x-request-id", "r-1"),
            ("traceparent", "00-abc-def-01"),
            ("x-random", "no"),
            ("x-b3-sampled", "1"),
        ])
    }

    fn names(headers: &[(String, String)]) -> Vec<&str> {
        headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn the_path_is_rendered_with_encoded_values() {
        let l = leg(
            r#"{"name": "a", "cluster": "c", "path": "/u/${header.x-user-id}/o?limit=${query.limit}&id=${query.id}&x=${query.x}&p=${path}"}"#,
        );
        let h = call_headers(&l, &request());
        assert_eq!(
            h[1].1,
            "/u/u-1/o?limit=5&id=%2E%2E%2Fadmin&x=a%0D%0Ab&p=/api/dashboard"
        );
        assert_eq!(
            h[2],
            (":authority".into(), "c".into()),
            "the cluster by default"
        );
    }

    #[test]
    fn identity_and_trace_headers_go_by_default_credentials_never() {
        let l = leg(r#"{"name": "a", "cluster": "c", "path": "/a"}"#);
        let h = call_headers(&l, &request());
        assert_eq!(
            names(&h),
            [
                ":method",
                ":path",
                ":authority",
                "accept",
                "accept-encoding",
                "x-request-id",
                "traceparent",
                "x-b3-sampled",
                "x-user-id"
            ]
        );
        let l = leg(
            r#"{"name": "a", "cluster": "c", "path": "/a", "method": "POST", "authority": "svc.internal:8080", "forward_headers": ["Authorization", "x-random", "x-random"]}"#,
        );
        let h = call_headers(&l, &request());
        assert_eq!(h[0].1, "POST");
        assert_eq!(h[2].1, "svc.internal:8080");
        assert_eq!(&names(&h)[5..], ["authorization", "x-random"]);
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_path_template("a/b")
            .unwrap_err()
            .contains("must start"));
        assert!(check_path_template("${path}/x").is_ok());
        assert!(check_path_template("/${header.authorization}")
            .unwrap_err()
            .contains("credentials"));
        assert!(check_path_template("/${claims.sub}")
            .unwrap_err()
            .starts_with("unknown template variable"));
        assert!(check_forwarded("content-length").is_err());
        assert!(check_forwarded("authorization").is_ok());
    }
}
