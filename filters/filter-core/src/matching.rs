//! Request matching shared by every filter's rule table: path (prefix, exact or regex), methods,
//! host and headers. Configured as JSON, compiled once, evaluated per request without allocating.

use crate::config::ConfigError;
use crate::headers::{split_path, HeaderMap};
use crate::string_match::{SafeRegex, StringMatch, StringMatcher};
use regex::Regex;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The `match` object of a rule, as written in the plugin configuration. Envoy's
/// `config.route.v3.RouteMatch` field names are read too (`prefix`, `path`, `safe_regex`,
/// `path_separated_prefix`, `case_sensitive`, `headers` as `HeaderMatcher`s, `query_parameters`,
/// `grpc`), so a native filter's `rules[].match` is accepted as written.
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
    /// Envoy's `prefix`: the same as `path_prefix`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Envoy's `path`: the same as `path_exact`.
    #[serde(default)]
    pub path: Option<String>,
    /// Envoy's `safe_regex`: the same as `path_regex`.
    #[serde(default)]
    pub safe_regex: Option<SafeRegex>,
    /// Envoy's `path_separated_prefix`: the path is this, or starts with this and `/`.
    #[serde(default)]
    pub path_separated_prefix: Option<String>,
    /// Envoy's `case_sensitive` (default true) for the path prefix, exact and separated forms.
    #[serde(default)]
    pub case_sensitive: Option<bool>,
    /// The method is one of these, compared exactly: methods are case-sensitive (RFC 9110
    /// section 9.1), so `get` is not `GET` and falls through to a later (stricter) rule.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The host equals this, compared as [`host_key`] does (case-insensitively, without a
    /// port or a trailing dot); a leading `*.` matches any subdomain.
    #[serde(default)]
    pub host: Option<String>,
    /// Header conditions: `{"name": "x-a"}` (present), `{"name": "x-a", "present": false}`
    /// (absent), `{"name": "x-a", "exact": "v"}` (present with that value), or any of Envoy's
    /// `HeaderMatcher` forms.
    #[serde(default)]
    pub headers: Vec<HeaderCondition>,
    /// Envoy's `query_parameters`: `{name, string_match | present_match}`.
    #[serde(default)]
    pub query_parameters: Vec<QueryCondition>,
    /// Envoy's `grpc: {}`: the request's `content-type` is `application/grpc...`.
    #[serde(default)]
    pub grpc: Option<IgnoredAny>,
    // `RouteMatch` fields a wasm filter cannot evaluate: refused by name, with what to use.
    #[serde(default)]
    pub runtime_fraction: Option<IgnoredAny>,
    #[serde(default)]
    pub tls_context: Option<IgnoredAny>,
    #[serde(default)]
    pub dynamic_metadata: Option<IgnoredAny>,
    #[serde(default)]
    pub filter_state: Option<IgnoredAny>,
    #[serde(default)]
    pub connect_matcher: Option<IgnoredAny>,
    #[serde(default)]
    pub path_match_policy: Option<IgnoredAny>,
}

impl RequestMatch {
    fn refuse_unsupported(&self) -> Result<(), ConfigError> {
        let refuse = |field: &str| {
            Err(ConfigError::new(
                field,
                "is not available to a wasm filter's own match; put the policy on the Envoy \
                 route that matches this way (route metadata, docs/gateway.md \"Policy by route\")",
            ))
        };
        let given = [
            ("runtime_fraction", self.runtime_fraction.is_some()),
            ("tls_context", self.tls_context.is_some()),
            ("dynamic_metadata", self.dynamic_metadata.is_some()),
            ("filter_state", self.filter_state.is_some()),
            ("connect_matcher", self.connect_matcher.is_some()),
            ("path_match_policy", self.path_match_policy.is_some()),
        ];
        match given.iter().find(|(_, set)| *set) {
            Some((field, _)) => refuse(field),
            None => Ok(()),
        }
    }
}

/// A header condition: ours (`present`, `exact`) or Envoy's `HeaderMatcher`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderCondition {
    pub name: String,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub present_match: Option<bool>,
    #[serde(default)]
    pub exact_match: Option<String>,
    #[serde(default)]
    pub prefix_match: Option<String>,
    #[serde(default)]
    pub suffix_match: Option<String>,
    #[serde(default)]
    pub contains_match: Option<String>,
    #[serde(default)]
    pub safe_regex_match: Option<SafeRegex>,
    #[serde(default)]
    pub string_match: Option<StringMatch>,
    /// Envoy's `range_match` on an integer header value: refused (not implemented).
    #[serde(default)]
    pub range_match: Option<IgnoredAny>,
    #[serde(default)]
    pub invert_match: bool,
    #[serde(default)]
    pub treat_missing_header_as_empty: bool,
}

/// Envoy's `QueryParameterMatcher`: the first value of the parameter (not percent-decoded, as
/// Envoy compares it) matches `string_match`, or the parameter is present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryCondition {
    pub name: String,
    #[serde(default)]
    pub string_match: Option<StringMatch>,
    #[serde(default)]
    pub present_match: Option<bool>,
}

/// A compiled [`RequestMatch`].
#[derive(Debug, Clone)]
pub struct RequestMatcher {
    path: PathMatch,
    methods: Vec<String>,
    host: Option<HostMatch>,
    headers: Vec<CompiledHeader>,
    queries: Vec<CompiledQuery>,
    grpc: bool,
}

#[derive(Debug, Clone)]
enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
    /// `path_separated_prefix`: the prefix itself, or the prefix then `/`.
    Separated(String),
    /// Prefix, exact or separated, compared ASCII case-insensitively.
    Folded(Box<PathMatch>),
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
    invert: bool,
    missing_as_empty: bool,
}

#[derive(Debug, Clone)]
enum HeaderExpect {
    Present,
    Absent,
    /// Ours: some value of the header equals this.
    Equals(String),
    /// Envoy's value matchers: the header's values joined with `,`, as Envoy compares them.
    Value(StringMatcher),
}

#[derive(Debug, Clone)]
struct CompiledQuery {
    name: String,
    /// `None`: present.
    value: Option<StringMatcher>,
}

impl RequestMatch {
    /// Validates and compiles. Errors name the field relative to this match object.
    pub fn compile(&self) -> Result<RequestMatcher, ConfigError> {
        self.refuse_unsupported()?;
        let path = self.compile_path()?;
        let mut methods = Vec::with_capacity(self.methods.len());
        for (i, m) in self.methods.iter().enumerate() {
            methods.push(check_method(&format!("methods[{i}]"), m)?);
        }
        let host = self.host.as_deref().map(compile_host).transpose()?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (i, cond) in self.headers.iter().enumerate() {
            headers.push(
                cond.compile()
                    .map_err(|e| e.within(&format!("headers[{i}]")))?,
            );
        }
        let mut queries = Vec::with_capacity(self.query_parameters.len());
        for (i, q) in self.query_parameters.iter().enumerate() {
            queries.push(
                q.compile()
                    .map_err(|e| e.within(&format!("query_parameters[{i}]")))?,
            );
        }
        Ok(RequestMatcher {
            path,
            methods,
            host,
            headers,
            queries,
            grpc: self.grpc.is_some(),
        })
    }

    fn compile_path(&self) -> Result<PathMatch, ConfigError> {
        let given = [
            ("path_prefix", self.path_prefix.as_ref()),
            ("path_exact", self.path_exact.as_ref()),
            ("path_regex", self.path_regex.as_ref()),
            ("prefix", self.prefix.as_ref()),
            ("path", self.path.as_ref()),
            ("safe_regex", self.safe_regex.as_ref().map(|r| &r.regex)),
            ("path_separated_prefix", self.path_separated_prefix.as_ref()),
        ];
        let mut set = given.iter().filter_map(|(f, v)| v.map(|v| (*f, v)));
        let (field, value) = match (set.next(), set.next()) {
            (None, _) => return Ok(PathMatch::Any),
            (Some(one), None) => one,
            (Some((a, _)), Some((b, _))) => {
                return Err(ConfigError::new(
                    b,
                    format!("give at most one path condition ({a} is given)"),
                ))
            }
        };
        let path = match field {
            "path_regex" | "safe_regex" => {
                // Anchored: the regex must match the whole path, as Envoy's safe_regex does.
                let re = Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    ConfigError::new(field, format!("invalid regular expression: {e}"))
                })?;
                return Ok(PathMatch::Regex(re));
            }
            "path_exact" | "path" => PathMatch::Exact(check_path(field, value)?),
            "path_separated_prefix" => {
                let p = check_path(field, value)?;
                if p.len() > 1 && p.ends_with('/') || p.contains(['?', '#']) {
                    return Err(ConfigError::new(
                        field,
                        "must not end with '/' or hold '?' or '#'",
                    ));
                }
                PathMatch::Separated(p)
            }
            _ => PathMatch::Prefix(check_path(field, value)?),
        };
        Ok(match self.case_sensitive {
            Some(false) => PathMatch::Folded(Box::new(path)),
            _ => path,
        })
    }
}

impl HeaderCondition {
    fn compile(&self) -> Result<CompiledHeader, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.range_match.is_some() {
            return Err(ConfigError::new(
                "range_match",
                "is not supported; match the value with safe_regex_match",
            ));
        }
        let simple = |s: &Option<String>, f: fn(String) -> StringMatch| s.clone().map(f);
        let envoy_value = [
            simple(&self.exact_match, |s| StringMatch {
                exact: Some(s),
                ..Default::default()
            }),
            simple(&self.prefix_match, |s| StringMatch {
                prefix: Some(s),
                ..Default::default()
            }),
            simple(&self.suffix_match, |s| StringMatch {
                suffix: Some(s),
                ..Default::default()
            }),
            simple(&self.contains_match, |s| StringMatch {
                contains: Some(s),
                ..Default::default()
            }),
            self.safe_regex_match.clone().map(|r| StringMatch {
                safe_regex: Some(r),
                ..Default::default()
            }),
            self.string_match.clone(),
        ];
        let mut kinds: Vec<HeaderExpect> = Vec::new();
        match (self.present, &self.exact) {
            (None, None) => {}
            (Some(true), None) => kinds.push(HeaderExpect::Present),
            (Some(false), None) => kinds.push(HeaderExpect::Absent),
            (None, Some(v)) => kinds.push(HeaderExpect::Equals(v.clone())),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new("exact", "give one of present and exact"))
            }
        }
        match self.present_match {
            Some(true) => kinds.push(HeaderExpect::Present),
            Some(false) => kinds.push(HeaderExpect::Absent),
            None => {}
        }
        for m in envoy_value.into_iter().flatten() {
            kinds.push(HeaderExpect::Value(m.compile()?));
        }
        let expect = match (kinds.pop(), kinds.is_empty()) {
            (None, _) => HeaderExpect::Present,
            (Some(k), true) => k,
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "",
                    "give at most one condition on the header's value",
                ))
            }
        };
        Ok(CompiledHeader {
            name: self.name.to_ascii_lowercase(),
            expect,
            invert: self.invert_match,
            missing_as_empty: self.treat_missing_header_as_empty,
        })
    }
}

impl QueryCondition {
    fn compile(&self) -> Result<CompiledQuery, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        let value = match (&self.string_match, self.present_match) {
            (Some(m), None) => Some(m.compile().map_err(|e| e.within("string_match"))?),
            (None, Some(true)) => None,
            _ => {
                return Err(ConfigError::new(
                    "",
                    "give exactly one of string_match and present_match: true",
                ))
            }
        };
        Ok(CompiledQuery {
            name: self.name.clone(),
            value,
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
            queries: Vec::new(),
            grpc: false,
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
        self.path.matches(path)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && self.host.as_ref().is_none_or(|h| h.matches(host))
            && self.headers.iter().all(|c| c.matches(headers))
            && (self.queries.is_empty() || self.queries_match(headers.path_and_query()))
            && (!self.grpc
                || headers
                    .get("content-type")
                    .is_some_and(|c| c.starts_with("application/grpc")))
    }

    fn queries_match(&self, path_and_query: &str) -> bool {
        let query = split_path(path_and_query).1.unwrap_or("");
        self.queries.iter().all(|q| {
            let first = query
                .split('&')
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .find(|(k, _)| *k == q.name);
            match (first, &q.value) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some((_, v)), Some(m)) => m.matches(v),
            }
        })
    }
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Separated(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            PathMatch::Folded(inner) => inner.matches_folded(path),
            PathMatch::Regex(re) => re.is_match(path),
        }
    }

    fn matches_folded(&self, path: &str) -> bool {
        let head = |p: &str| {
            path.get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p))
        };
        match self {
            PathMatch::Prefix(p) => head(p),
            PathMatch::Exact(p) => path.eq_ignore_ascii_case(p),
            PathMatch::Separated(p) => {
                head(p) && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
            other => other.matches(path),
        }
    }
}

impl CompiledHeader {
    fn matches(&self, headers: &HeaderMap) -> bool {
        let present = headers.contains(&self.name);
        let hit = match &self.expect {
            HeaderExpect::Present => present,
            HeaderExpect::Absent => !present,
            HeaderExpect::Equals(v) => headers.get_all(&self.name).any(|got| got == v),
            HeaderExpect::Value(_) if !present && !self.missing_as_empty => return false,
            HeaderExpect::Value(m) => {
                let mut values = headers.get_all(&self.name);
                match (values.next(), values.next()) {
                    (None, _) => m.matches(""),
                    (Some(one), None) => m.matches(one),
                    (Some(a), Some(b)) => {
                        let mut joined = format!("{a},{b}");
                        for v in values {
                            joined.push(',');
                            joined.push_str(v);
                        }
                        m.matches(&joined)
                    }
                }
            }
        };
        hit != self.invert
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

    /// Envoy's `RouteMatch` as a native jwt_authn rule writes it.
    #[test]
    fn envoy_route_match_forms() {
        assert!(m(r#"{"prefix":"/api"}"#).matches(&req("GET", "/api/x", "h")));
        assert!(m(r#"{"path":"/a"}"#).matches(&req("GET", "/a?x", "h")));
        assert!(!m(r#"{"path":"/a"}"#).matches(&req("GET", "/a/", "h")));
        let re = m(r#"{"safe_regex":{"google_re2":{},"regex":"/v[0-9]+/.*"}}"#);
        assert!(re.matches(&req("GET", "/v2/x", "h")));
        assert!(!re.matches(&req("GET", "/x/v2/x", "h")));
        let sep = m(r#"{"path_separated_prefix":"/api"}"#);
        for (path, hit) in [
            ("/api", true),
            ("/api/x", true),
            ("/api?q", true),
            ("/apix", false),
        ] {
            assert_eq!(sep.matches(&req("GET", path, "h")), hit, "{path}");
        }
        let folded = m(r#"{"prefix":"/API","case_sensitive":false}"#);
        assert!(folded.matches(&req("GET", "/api/x", "h")));
        assert!(!m(r#"{"prefix":"/API"}"#).matches(&req("GET", "/api/x", "h")));
        let folded_sep = m(r#"{"path_separated_prefix":"/Api","case_sensitive":false}"#);
        assert!(folded_sep.matches(&req("GET", "/aPI/x", "h")));
        assert!(!folded_sep.matches(&req("GET", "/apix", "h")));
        let mut grpc = req("POST", "/pkg.Svc/M", "h");
        assert!(!m(r#"{"prefix":"/","grpc":{}}"#).matches(&grpc));
        grpc.append("content-type", "application/grpc+proto");
        assert!(m(r#"{"prefix":"/","grpc":{}}"#).matches(&grpc));
    }

    #[test]
    fn envoy_header_and_query_matchers() {
        let r = req("GET", "/p?a=1&b=x%20y&flag", "h");
        let hit = |json: &str| m(json).matches(&r);
        assert!(hit(
            r#"{"headers":[{"name":"x-env","exact_match":"prod"}]}"#
        ));
        assert!(hit(r#"{"headers":[{"name":"x-env","prefix_match":"pr"}]}"#));
        assert!(hit(r#"{"headers":[{"name":"x-env","suffix_match":"od"}]}"#));
        assert!(hit(
            r#"{"headers":[{"name":"x-env","contains_match":"ro"}]}"#
        ));
        assert!(hit(
            r#"{"headers":[{"name":"x-env","safe_regex_match":{"regex":"p.*"}}]}"#
        ));
        assert!(hit(
            r#"{"headers":[{"name":"x-env","string_match":{"exact":"PROD","ignore_case":true}}]}"#
        ));
        assert!(hit(
            r#"{"headers":[{"name":"x-env","present_match":true}]}"#
        ));
        assert!(hit(
            r#"{"headers":[{"name":"x-none","present_match":false}]}"#
        ));
        assert!(hit(
            r#"{"headers":[{"name":"x-env","exact_match":"dev","invert_match":true}]}"#
        ));
        // A missing header fails a value match, inverted or not, unless it counts as empty.
        assert!(!hit(r#"{"headers":[{"name":"x-none","exact_match":"a"}]}"#));
        assert!(!hit(
            r#"{"headers":[{"name":"x-none","exact_match":"a","invert_match":true}]}"#
        ));
        assert!(hit(
            r#"{"headers":[{"name":"x-none","exact_match":"","treat_missing_header_as_empty":true}]}"#
        ));
        assert!(hit(
            r#"{"headers":[{"name":"x-none","present_match":true,"invert_match":true}]}"#
        ));
        // Several values are compared joined with ',', as Envoy does.
        let mut two = r.clone();
        two.append("x-env", "eu");
        assert!(m(r#"{"headers":[{"name":"x-env","exact_match":"prod,eu"}]}"#).matches(&two));
        // Query parameters: the first value, as written (not percent-decoded).
        assert!(hit(
            r#"{"query_parameters":[{"name":"a","string_match":{"exact":"1"}}]}"#
        ));
        assert!(hit(
            r#"{"query_parameters":[{"name":"b","string_match":{"exact":"x%20y"}}]}"#
        ));
        assert!(hit(
            r#"{"query_parameters":[{"name":"flag","present_match":true}]}"#
        ));
        assert!(!hit(
            r#"{"query_parameters":[{"name":"c","present_match":true}]}"#
        ));
        assert!(!hit(
            r#"{"query_parameters":[{"name":"a","string_match":{"exact":"2"}}]}"#
        ));
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
            "path_exact"
        );
        assert_eq!(err(r#"{"prefix":"/a","path":"/a"}"#).field, "path");
        assert_eq!(
            err(r#"{"runtime_fraction":{"default_value":{}}}"#).field,
            "runtime_fraction"
        );
        assert_eq!(
            err(r#"{"headers":[{"name":"a","range_match":{}}]}"#).field,
            "headers[0].range_match"
        );
        assert_eq!(
            err(r#"{"headers":[{"name":"a","exact_match":"x","prefix_match":"y"}]}"#).field,
            "headers[0]"
        );
        assert_eq!(
            err(r#"{"query_parameters":[{"name":"q"}]}"#).field,
            "query_parameters[0]"
        );
        assert_eq!(
            err(r#"{"query_parameters":[{"name":"q","string_match":{"prefix":""}}]}"#).field,
            "query_parameters[0].string_match.prefix"
        );
        assert_eq!(
            err(r#"{"path_separated_prefix":"/a/"}"#).field,
            "path_separated_prefix"
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
