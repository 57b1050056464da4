//! Request matching shared by every filter's rule table: path (prefix, exact or regex), methods,
//! host and headers. Configured as JSON, compiled once, evaluated per request without allocating.

use crate::config::ConfigError;
use crate::headers::HeaderMap;
use regex::Regex;
use serde::Deserialize;

/// The `match` object of a rule, as written in the plugin configuration.
///
/// Every condition that is present must hold. An empty match matches every request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// The path (without query string) starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// The path (without query string) is exactly this.
    #[serde(default)]
    pub path_exact: Option<String>,
    /// The whole path (without query string) matches this regular expression.
    #[serde(default)]
    pub path_regex: Option<String>,
    /// The method is one of these, compared exactly: methods are case-sensitive (RFC 9110
    /// section 9.1), so `get` is not `GET` and falls through to a later (stricter) rule.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The host equals this, compared as [`host_key`] does (case-insensitively, without a
    /// port or a trailing dot); a leading `*.` matches any subdomain.
    #[serde(default)]
    pub host: Option<String>,
    /// Header conditions: `{"name": "x-a"}` (present), `{"name": "x-a", "present": false}`
    /// (absent) or `{"name": "x-a", "exact": "v"}` (present with that value).
    #[serde(default)]
    pub headers: Vec<HeaderCondition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderCondition {
    pub name: String,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub exact: Option<String>,
}

/// A compiled [`RequestMatch`].
#[derive(Debug, Clone)]
pub struct RequestMatcher {
    path: PathMatch,
    methods: Vec<String>,
    host: Option<HostMatch>,
    headers: Vec<CompiledHeader>,
}

#[derive(Debug, Clone)]
enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
enum HostMatch {
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone)]
struct CompiledHeader {
    name: String,
    expect: HeaderExpect,
}

#[derive(Debug, Clone)]
enum HeaderExpect {
    Present,
    Absent,
    Equals(String),
}

impl RequestMatch {
    /// Validates and compiles. Errors name the field relative to this match object.
    pub fn compile(&self) -> Result<RequestMatcher, ConfigError> {
        let path = match (&self.path_prefix, &self.path_exact, &self.path_regex) {
            (None, None, None) => PathMatch::Any,
            (Some(p), None, None) => PathMatch::Prefix(check_path("path_prefix", p)?),
            (None, Some(p), None) => PathMatch::Exact(check_path("path_exact", p)?),
            (None, None, Some(re)) => {
                // Anchored: the regex must match the whole path, as Envoy's safe_regex does.
                let anchored = format!("^(?:{re})$");
                PathMatch::Regex(Regex::new(&anchored).map_err(|e| {
                    ConfigError::new("path_regex", format!("invalid regular expression: {e}"))
                })?)
            }
            _ => {
                return Err(ConfigError::new(
                    "path_prefix",
                    "give at most one of path_prefix, path_exact and path_regex",
                ))
            }
        };
        let mut methods = Vec::with_capacity(self.methods.len());
        for (i, m) in self.methods.iter().enumerate() {
            methods.push(check_method(&format!("methods[{i}]"), m)?);
        }
        let host = self.host.as_deref().map(compile_host).transpose()?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (i, cond) in self.headers.iter().enumerate() {
            let field = format!("headers[{i}]");
            if cond.name.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.name"),
                    "must not be empty",
                ));
            }
            let expect = match (cond.present, &cond.exact) {
                (None | Some(true), None) => HeaderExpect::Present,
                (Some(false), None) => HeaderExpect::Absent,
                (None | Some(true), Some(v)) => HeaderExpect::Equals(v.clone()),
                (Some(false), Some(_)) => {
                    return Err(ConfigError::new(
                        format!("{field}.exact"),
                        "cannot require a value of a header that must be absent",
                    ))
                }
            };
            headers.push(CompiledHeader {
                name: cond.name.to_ascii_lowercase(),
                expect,
            });
        }
        Ok(RequestMatcher {
            path,
            methods,
            host,
            headers,
        })
    }
}

/// Standard methods are upper-case; a configured lower-case spelling of one is almost surely a
/// mistake that would never match (methods are compared exactly), so it is refused.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn check_method(field: &str, m: &str) -> Result<String, ConfigError> {
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ConfigError::new(
            field,
            format!("{m:?} is not an HTTP method"),
        ));
    }
    if let Some(std) = STANDARD_METHODS
        .iter()
        .find(|s| s.eq_ignore_ascii_case(m) && **s != m)
    {
        return Err(ConfigError::new(
            field,
            format!("{m:?}: methods are case-sensitive; write {std:?}"),
        ));
    }
    Ok(m.to_string())
}

/// A `host` condition: `*.example.com` or an exact host, stored as [`host_key`] computes it.
/// A port in the condition is refused: hosts are compared without one.
fn compile_host(h: &str) -> Result<HostMatch, ConfigError> {
    let (wildcard, rest) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h),
    };
    let key = host_key(rest);
    if key.is_empty() {
        return Err(ConfigError::new("host", "must not be empty"));
    }
    if key != rest.to_ascii_lowercase().trim_end_matches('.') || key.contains('*') {
        return Err(ConfigError::new(
            "host",
            format!("{h:?}: give a host name without a port (hosts are compared without one)"),
        ));
    }
    Ok(if wildcard {
        HostMatch::Suffix(format!(".{key}"))
    } else {
        HostMatch::Exact(key)
    })
}

fn check_path(field: &str, p: &str) -> Result<String, ConfigError> {
    if p.starts_with('/') {
        Ok(p.to_string())
    } else {
        Err(ConfigError::new(
            field,
            format!("{p:?} must start with '/'"),
        ))
    }
}

impl RequestMatcher {
    /// A matcher that matches every request.
    pub fn any() -> Self {
        Self {
            path: PathMatch::Any,
            methods: Vec::new(),
            host: None,
            headers: Vec::new(),
        }
    }

    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.matches_parts(
            headers.method(),
            headers.path(),
            headers.authority(),
            headers,
        )
    }

    /// Matching on already-extracted parts (`path` without its query string).
    pub fn matches_parts(&self, method: &str, path: &str, host: &str, headers: &HeaderMap) -> bool {
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(re) => re.is_match(path),
        };
        path_ok
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && self.host.as_ref().is_none_or(|h| h.matches(host))
            && self.headers.iter().all(|c| match &c.expect {
                HeaderExpect::Present => headers.contains(&c.name),
                HeaderExpect::Absent => !headers.contains(&c.name),
                HeaderExpect::Equals(v) => headers.get_all(&c.name).any(|got| got == v),
            })
    }
}

impl HostMatch {
    fn matches(&self, authority: &str) -> bool {
        let host = host_key(authority);
        match self {
            HostMatch::Exact(want) => host == *want,
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

/// The one way hosts are compared, in every rule and config check: `:authority` without its
/// port ([`strip_port`]) and without a trailing dot, lower-cased. `API.Example.com.:8443` and
/// `api.example.com` are the same host, as they are to DNS and to Envoy's virtual hosts.
pub fn host_key(authority: &str) -> String {
    let host = strip_port(authority);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// `host:port` -> `host`; IPv6 literals (`[::1]:80`) keep their brackets. Whatever follows the
/// last colon goes, digits or not: Envoy's `host:*` domains route `host:x` to `host`'s virtual
/// host, and a host rule must not see a different host than the route did.
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(json: &str) -> RequestMatcher {
        serde_json::from_str::<RequestMatch>(json)
            .unwrap()
            .compile()
            .unwrap()
    }

    fn req(method: &str, path: &str, host: &str) -> HeaderMap {
        HeaderMap::from([
            (":method", method),
            (":path", path),
            (":authority", host),
            ("x-env", "prod"),
        ])
    }

    #[test]
    fn path_kinds_ignore_the_query() {
        assert!(m(r#"{"path_prefix":"/api"}"#).matches(&req("GET", "/api/x?q=1", "h")));
        assert!(!m(r#"{"path_prefix":"/api"}"#).matches(&req("GET", "/ap?api", "h")));
        assert!(m(r#"{"path_exact":"/a"}"#).matches(&req("GET", "/a?x", "h")));
        assert!(!m(r#"{"path_exact":"/a"}"#).matches(&req("GET", "/a/b", "h")));
        let re = m(r#"{"path_regex":"/users/[0-9]+"}"#);
        assert!(re.matches(&req("GET", "/users/42?x=1", "h")));
        assert!(
            !re.matches(&req("GET", "/users/42/x", "h")),
            "regex is anchored"
        );
    }

    #[test]
    fn methods_host_headers() {
        let rule = m(
            r#"{"methods":["GET","HEAD"],"host":"*.example.com","headers":[{"name":"X-Env","exact":"prod"},{"name":"x-debug","present":false}]}"#,
        );
        assert!(rule.matches(&req("GET", "/", "a.example.com:8443")));
        assert!(!rule.matches(&req("POST", "/", "a.example.com")));
        assert!(!rule.matches(&req("GET", "/", "example.com")));
        let mut with_debug = req("GET", "/", "a.example.com");
        with_debug.append("x-debug", "1");
        assert!(!rule.matches(&with_debug));
        let exact_host = m(r#"{"host":"API.example.com"}"#);
        assert!(exact_host.matches(&req("GET", "/", "api.example.com:80")));
        assert!(exact_host.matches(&req("GET", "/", "Api.Example.COM.")));
        assert!(exact_host.matches(&req("GET", "/", "api.example.com.:8443")));
        assert!(!exact_host.matches(&req("GET", "/", "xapi.example.com")));
        assert!(!exact_host.matches(&req("GET", "/", "api.example.com..")));
        assert!(rule.matches(&req("GET", "/", "A.EXAMPLE.com.")));
        assert!(m("{}").matches(&req("DELETE", "/anything", "")));
    }

    /// RFC 9110 section 9.1: `get` is not `GET`. A rule for GET does not match it, so the
    /// request falls through to whatever stricter rule follows.
    #[test]
    fn methods_are_case_sensitive() {
        let read = m(r#"{"methods":["GET","HEAD"]}"#);
        for method in ["get", "Get", "gET", "head"] {
            assert!(!read.matches(&req(method, "/", "h")), "{method}");
        }
        assert!(read.matches(&req("GET", "/", "h")));
        let custom = m(r#"{"methods":["PURGE"]}"#);
        assert!(custom.matches(&req("PURGE", "/", "h")));
        assert!(!custom.matches(&req("purge", "/", "h")));
    }

    #[test]
    fn host_key_is_the_one_comparison() {
        assert_eq!(host_key("API.Example.com.:8443"), "api.example.com");
        assert_eq!(host_key("api.example.com"), "api.example.com");
        assert_eq!(host_key("[::1]:80"), "[::1]");
        assert_eq!(host_key(""), "");
    }

    #[test]
    fn bad_matches_name_the_field() {
        let err = |json: &str| {
            serde_json::from_str::<RequestMatch>(json)
                .unwrap()
                .compile()
                .unwrap_err()
        };
        assert_eq!(err(r#"{"path_regex":"("}"#).field, "path_regex");
        assert_eq!(
            err(r#"{"path_prefix":"api"}"#).reason,
            "\"api\" must start with '/'"
        );
        assert_eq!(
            err(r#"{"path_prefix":"/a","path_exact":"/a"}"#).field,
            "path_prefix"
        );
        assert_eq!(err(r#"{"methods":["GET","P UT"]}"#).field, "methods[1]");
        assert_eq!(
            err(r#"{"methods":["get"]}"#).reason,
            "\"get\": methods are case-sensitive; write \"GET\""
        );
        assert_eq!(err(r#"{"host":"api.example.com:80"}"#).field, "host");
        assert_eq!(err(r#"{"host":""}"#).field, "host");
        assert_eq!(err(r#"{"host":"*."}"#).field, "host");
        assert_eq!(
            err(r#"{"headers":[{"name":"a","present":false,"exact":"x"}]}"#).field,
            "headers[0].exact"
        );
    }

    #[test]
    fn strip_port_handles_ipv6() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("h:80"), "h");
        assert_eq!(strip_port("h"), "h");
        assert_eq!(
            strip_port("h:x"),
            "h",
            "a port that is not a number is still a port"
        );
        assert_eq!(strip_port("h:"), "h");
    }
}
