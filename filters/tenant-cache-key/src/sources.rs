//! Tenant sources, compiled from the configuration, and resolution: the first source that
//! yields a valid tenant id wins.
//!
//! Sources never read the tenant header or the plan header: those are removed from every
//! request before resolution, so nothing a client sends under those names can become its tenant.
//!
//! Sources have trust levels: `claim` and `api_key` are credentials (the tenant is proven);
//! `host`, `path` and `default` are not (anyone can send any host or path). An `api_key` source
//! whose key header is present but does not verify yields [`Resolution::Invalid`]: the request is
//! refused rather than passed on to a weaker source.

use crate::config::{
    ApiKeySourceConfig, ClaimSourceConfig, DefaultSourceConfig, HostSourceConfig, PathSourceConfig,
    SourceConfig, DEFAULT_API_KEY_HEADER,
};
use crate::tenant_id::{check_configured_id, is_valid_tenant_id};
use filter_core::matching::host_key;
use filter_core::{ConfigError, HeaderMap, RequestMatch, RequestMatcher};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Which kind of source resolved a tenant (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Claim,
    ApiKey,
    Host,
    Path,
    Default,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Claim,
        SourceKind::ApiKey,
        SourceKind::Host,
        SourceKind::Path,
        SourceKind::Default,
    ];

    /// True for the sources that prove the tenant (a verified claim, a known API key).
    pub fn is_credential(self) -> bool {
        matches!(self, SourceKind::Claim | SourceKind::ApiKey)
    }

    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Claim => "claim",
            SourceKind::ApiKey => "api_key",
            SourceKind::Host => "host",
            SourceKind::Path => "path",
            SourceKind::Default => "default",
        }
    }
}

/// A tenant found for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'s> {
    pub tenant: String,
    pub plan: Option<String>,
    pub source: SourceKind,
    /// A credential header to remove now that it has done its job (the API key).
    pub consumed: Option<&'s str>,
}

/// What one source makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'s> {
    /// Nothing for this source (outside its match, its header absent, an invalid id): the next
    /// source is tried.
    Skip,
    Tenant(Resolved<'s>),
    /// The request presents this source's credential and it does not verify (an unknown API
    /// key, or the key header repeated): the request is refused, never resolved by a later,
    /// weaker source.
    Invalid,
}

impl<'s> Resolution<'s> {
    /// The tenant, if one was found.
    pub fn found(self) -> Option<Resolved<'s>> {
        match self {
            Resolution::Tenant(r) => Some(r),
            Resolution::Skip | Resolution::Invalid => None,
        }
    }
}

/// A compiled source.
#[derive(Debug, Clone)]
pub struct Source {
    matcher: Option<RequestMatcher>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Claim {
        header: String,
        plan_header: Option<String>,
    },
    ApiKey(ApiKeys),
    Host {
        /// Lower-case, starting with '.'.
        suffix: String,
        plan: Option<String>,
    },
    Path {
        segment: usize,
        plan: Option<String>,
    },
    Default {
        tenant: String,
        plan: Option<String>,
    },
}

/// API keys by the SHA-256 digest of the key: the configuration never holds a usable key.
#[derive(Clone)]
struct ApiKeys {
    header: String,
    remove: bool,
    by_digest: BTreeMap<[u8; 32], (String, Option<String>)>,
}

impl std::fmt::Debug for ApiKeys {
    // Digests are not secrets, but there is no reason to print a table of them either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("header", &self.header)
            .field("remove", &self.remove)
            .field("keys", &self.by_digest.len())
            .finish()
    }
}

/// Names the compiler needs to check sources against.
pub struct Reserved<'a> {
    pub tenant_header: &'a str,
    pub plan_header: Option<&'a str>,
    pub max_len: usize,
}

impl Source {
    pub fn kind(&self) -> SourceKind {
        match self.kind {
            Kind::Claim { .. } => SourceKind::Claim,
            Kind::ApiKey(_) => SourceKind::ApiKey,
            Kind::Host { .. } => SourceKind::Host,
            Kind::Path { .. } => SourceKind::Path,
            Kind::Default { .. } => SourceKind::Default,
        }
    }

    /// True for a `default` without a `match`: every later source is unreachable.
    pub fn always_resolves(&self) -> bool {
        matches!(self.kind, Kind::Default { .. }) && self.matcher.is_none()
    }

    /// Validates one source. Errors name fields relative to the source (`api_key.keys[0].tenant`).
    pub fn compile(config: &SourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
        let (name, result) = match config {
            SourceConfig::Claim(c) => ("claim", compile_claim(c, reserved)),
            SourceConfig::ApiKey(c) => ("api_key", compile_api_key(c, reserved)),
            SourceConfig::Host(c) => ("host", compile_host(c, reserved)),
            SourceConfig::Path(c) => ("path", compile_path(c, reserved)),
            SourceConfig::Default(c) => ("default", compile_default(c, reserved)),
        };
        result.map_err(|e| e.within(name))
    }

    /// What this source makes of the request.
    pub fn resolve(&self, headers: &HeaderMap, max_len: usize) -> Resolution<'_> {
        if let Some(m) = &self.matcher {
            if !m.matches(headers) {
                return Resolution::Skip;
            }
        }
        let found = match &self.kind {
            Kind::Claim {
                header,
                plan_header,
            } => single_value(headers, header).map(|tenant| {
                let plan = plan_header
                    .as_deref()
                    .and_then(|h| single_value(headers, h))
                    .filter(|p| is_valid_tenant_id(p, max_len));
                (tenant.to_string(), plan.map(str::to_string), None)
            }),
            Kind::ApiKey(keys) => return keys.resolve(headers),
            Kind::Host { suffix, plan } => {
                let host = host_key(headers.authority());
                host.strip_suffix(suffix.as_str())
                    .filter(|label| !label.contains('.'))
                    .map(|label| (label.to_string(), plan.clone(), None))
            }
            Kind::Path { segment, plan } => headers
                .path()
                .split('/')
                .skip(1)
                .nth(*segment)
                .map(|t| (t.to_string(), plan.clone(), None)),
            Kind::Default { tenant, plan } => Some((tenant.clone(), plan.clone(), None)),
        };
        match found {
            Some((tenant, plan, consumed)) if is_valid_tenant_id(&tenant, max_len) => {
                Resolution::Tenant(Resolved {
                    tenant,
                    plan,
                    source: self.kind(),
                    consumed,
                })
            }
            _ => Resolution::Skip,
        }
    }
}

impl ApiKeys {
    /// A key header present once with a known key resolves; absent skips; anything else (an
    /// unknown key, the header repeated) is a credential that does not verify.
    fn resolve(&self, headers: &HeaderMap) -> Resolution<'_> {
        let mut values = headers.get_all(&self.header);
        let Some(presented) = values.next() else {
            return Resolution::Skip;
        };
        if values.next().is_some() {
            return Resolution::Invalid;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        match self.by_digest.get(&digest) {
            Some((tenant, plan)) => Resolution::Tenant(Resolved {
                tenant: tenant.clone(),
                plan: plan.clone(),
                source: SourceKind::ApiKey,
                consumed: self.remove.then_some(self.header.as_str()),
            }),
            None => Resolution::Invalid,
        }
    }
}

/// The value of a header that is present exactly once; a repeated header is ambiguous and
/// resolves nothing (neither copy is trusted over the other).
fn single_value<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    let mut values = headers.get_all(name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(first)
}

fn compile_match(matches: &Option<RequestMatch>) -> Result<Option<RequestMatcher>, ConfigError> {
    matches
        .as_ref()
        .map(|m| m.compile().map_err(|e| e.within("match")))
        .transpose()
}

/// A header a source reads: valid, and not one this filter owns.
pub fn source_header(
    field: &str,
    name: &str,
    reserved: &Reserved<'_>,
) -> Result<String, ConfigError> {
    let lower = header_name(field, name)?;
    if lower == reserved.tenant_header || Some(lower.as_str()) == reserved.plan_header {
        return Err(ConfigError::new(
            field,
            format!(
                "{lower:?} is the header this filter writes; every client copy of it is removed \
                 before resolution, so a source must read another header (e.g. the one the JWT \
                 filter sets, such as \"x-jwt-tenant\")"
            ),
        ));
    }
    Ok(lower)
}

pub use filter_core::config::header_name;

fn compile_claim(c: &ClaimSourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
    let header = source_header("header", &c.header, reserved)?;
    let plan_header = match &c.plan_header {
        None => None,
        Some(_) if reserved.plan_header.is_none() => {
            return Err(ConfigError::new(
                "plan_header",
                "a plan source needs the top-level plan_header to write the plan to",
            ))
        }
        Some(h) => Some(source_header("plan_header", h, reserved)?),
    };
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::Claim {
            header,
            plan_header,
        },
    })
}

fn compile_api_key(c: &ApiKeySourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
    let header = source_header(
        "header",
        c.header.as_deref().unwrap_or(DEFAULT_API_KEY_HEADER),
        reserved,
    )?;
    if c.keys.is_empty() {
        return Err(ConfigError::new("keys", "at least one key is required"));
    }
    let mut by_digest = BTreeMap::new();
    for (i, key) in c.keys.iter().enumerate() {
        let field = format!("keys[{i}]");
        // The value is never echoed: a mistake here is often a raw key pasted in place of its
        // digest, and Envoy's log is no place for it.
        let digest = parse_sha256_hex(&key.sha256).ok_or_else(|| {
            ConfigError::new(
                format!("{field}.sha256"),
                "must be the SHA-256 of the key as 64 hex digits (printf %s \"$KEY\" | sha256sum); \
                 the value is not shown in case it is a key",
            )
        })?;
        check_configured_id("tenant id", &key.tenant, reserved.max_len)
            .map_err(|r| ConfigError::new(format!("{field}.tenant"), r))?;
        let plan = configured_plan(&format!("{field}.plan"), &key.plan, reserved)?;
        if by_digest
            .insert(digest, (key.tenant.clone(), plan))
            .is_some()
        {
            return Err(ConfigError::new(
                format!("{field}.sha256"),
                "the same digest is listed twice",
            ));
        }
    }
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::ApiKey(ApiKeys {
            header,
            remove: c.remove.unwrap_or(true),
            by_digest,
        }),
    })
}

fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn compile_host(c: &HostSourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
    let suffix = c.suffix.to_ascii_lowercase();
    let labels_ok = suffix.len() > 1
        && suffix.starts_with('.')
        && suffix[1..]
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !labels_ok {
        return Err(ConfigError::new(
            "suffix",
            format!(
                "{:?} must be the part of the host after the tenant label, starting with '.' \
                 (e.g. \".api.example.com\" for acme.api.example.com)",
                c.suffix
            ),
        ));
    }
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::Host {
            suffix,
            plan: configured_plan("plan", &c.plan, reserved)?,
        },
    })
}

fn compile_path(c: &PathSourceConfig, reserved: &Reserved<'_>) -> Result<Source, ConfigError> {
    if c.segment > 32 {
        return Err(ConfigError::new(
            "segment",
            format!("{} is beyond the 32nd path segment", c.segment),
        ));
    }
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::Path {
            segment: c.segment,
            plan: configured_plan("plan", &c.plan, reserved)?,
        },
    })
}

fn compile_default(
    c: &DefaultSourceConfig,
    reserved: &Reserved<'_>,
) -> Result<Source, ConfigError> {
    check_configured_id("tenant id", &c.tenant, reserved.max_len)
        .map_err(|r| ConfigError::new("tenant", r))?;
    Ok(Source {
        matcher: compile_match(&c.matches)?,
        kind: Kind::Default {
            tenant: c.tenant.clone(),
            plan: configured_plan("plan", &c.plan, reserved)?,
        },
    })
}

/// A plan written in the configuration: a valid id, and somewhere to write it.
fn configured_plan(
    field: &str,
    plan: &Option<String>,
    reserved: &Reserved<'_>,
) -> Result<Option<String>, ConfigError> {
    match plan {
        None => Ok(None),
        Some(_) if reserved.plan_header.is_none() => Err(ConfigError::new(
            field,
            "a plan needs the top-level plan_header to write it to",
        )),
        Some(p) => {
            check_configured_id("plan", p, reserved.max_len)
                .map_err(|r| ConfigError::new(field, r))?;
            Ok(Some(p.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESERVED: Reserved<'static> = Reserved {
        tenant_header: "x-tenant-id",
        plan_header: Some("x-tenant-plan"),
        max_len: 64,
    };

    fn source(json: &str) -> Source {
        let config: SourceConfig = serde_json::from_str(json).unwrap();
        Source::compile(&config, &RESERVED).unwrap()
    }

    fn source_err(json: &str) -> ConfigError {
        let config: SourceConfig = serde_json::from_str(json).unwrap();
        Source::compile(&config, &RESERVED).unwrap_err()
    }

    fn sha256_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::from([(":method", "GET"), (":path", "/"), (":authority", "gw")]);
        for (n, v) in pairs {
            if n.starts_with(':') {
                h.set(n, v);
            } else {
                h.append(n, v);
            }
        }
        h
    }

    /// The tenant a source finds, or None (skipped or invalid).
    fn found<'s>(s: &'s Source, pairs: &[(&str, &str)]) -> Option<Resolved<'s>> {
        s.resolve(&req(pairs), 64).found()
    }

    #[test]
    fn claim_header_single_valid_value() {
        let s = source(r#"{"claim": {"header": "X-JWT-Tenant", "plan_header": "x-jwt-plan"}}"#);
        let r = found(&s, &[("x-jwt-tenant", "acme"), ("x-jwt-plan", "pro")]).unwrap();
        assert_eq!(
            (r.tenant.as_str(), r.plan.as_deref(), r.source),
            ("acme", Some("pro"), SourceKind::Claim)
        );
        assert_eq!(r.consumed, None);
        // A bad plan is dropped, the tenant stays.
        let r = found(&s, &[("x-jwt-tenant", "acme"), ("x-jwt-plan", "p r o")]).unwrap();
        assert_eq!(r.plan, None);
        // Two copies, an invalid id, or none: nothing, and the next source is tried.
        let skip = |pairs: &[(&str, &str)]| s.resolve(&req(pairs), 64) == Resolution::Skip;
        assert!(skip(&[
            ("x-jwt-tenant", "acme"),
            ("x-jwt-tenant", "globex")
        ]));
        assert!(skip(&[("x-jwt-tenant", "acme, globex")]));
        assert!(skip(&[]));
    }

    #[test]
    fn api_keys_compare_digests_and_are_consumed() {
        let json = format!(
            r#"{{"api_key": {{"keys": [
                {{"sha256": "{}", "tenant": "acme", "plan": "pro"}},
                {{"sha256": "{}", "tenant": "globex"}}]}}}}"#,
            sha256_hex("key-acme"),
            sha256_hex("key-globex").to_ascii_uppercase()
        );
        let s = source(&json);
        let r = found(&s, &[("x-api-key", "key-acme")]).unwrap();
        assert_eq!(
            (r.tenant.as_str(), r.plan.as_deref(), r.consumed),
            ("acme", Some("pro"), Some("x-api-key"))
        );
        let r = found(&s, &[("X-Api-Key", "key-globex")]).unwrap();
        assert_eq!((r.tenant.as_str(), r.plan), ("globex", None));
        assert_eq!(s.resolve(&req(&[]), 64), Resolution::Skip, "no key");
        // A key that is presented and does not verify is refused, not skipped.
        let invalid = |pairs: &[(&str, &str)]| s.resolve(&req(pairs), 64) == Resolution::Invalid;
        assert!(invalid(&[("x-api-key", "key-acme ")]));
        assert!(invalid(&[("x-api-key", "nope")]));
        assert!(invalid(&[("x-api-key", "")]));
        assert!(
            invalid(&[("x-api-key", "key-acme"), ("x-api-key", "key-acme")]),
            "a repeated key header is ambiguous"
        );
        // Outside the source's match the key is not this source's business.
        let scoped = source(&format!(
            r#"{{"api_key": {{"match": {{"path_prefix": "/api"}}, "keys": [{{"sha256": "{}", "tenant": "acme"}}]}}}}"#,
            sha256_hex("k")
        ));
        assert_eq!(
            scoped.resolve(&req(&[("x-api-key", "nope")]), 64),
            Resolution::Skip
        );
        let keep = source(&format!(
            r#"{{"api_key": {{"header": "x-key", "remove": false, "keys": [{{"sha256": "{}", "tenant": "acme"}}]}}}}"#,
            sha256_hex("k")
        ));
        assert_eq!(found(&keep, &[("x-key", "k")]).unwrap().consumed, None);
    }

    #[test]
    fn host_label_before_the_suffix() {
        let s = source(r#"{"host": {"suffix": ".API.example.com", "plan": "free"}}"#);
        let r = found(&s, &[(":authority", "acme.api.example.com")]).unwrap();
        assert_eq!(
            (r.plan.as_deref(), r.source),
            (Some("free"), SourceKind::Host)
        );
        let tenant = |host: &str| found(&s, &[(":authority", host)]).map(|r| r.tenant);
        assert_eq!(tenant("acme.api.example.com").as_deref(), Some("acme"));
        assert_eq!(tenant("ACME.api.example.com:8443").as_deref(), Some("acme"));
        assert_eq!(tenant("ACME.api.example.com.").as_deref(), Some("acme"));
        assert_eq!(tenant("acme.api.example.com:8080").as_deref(), Some("acme"));
        assert_eq!(
            tenant("Acme.API.Example.Com.:8080").as_deref(),
            Some("acme")
        );
        assert_eq!(
            tenant("acme.api.example.com.."),
            None,
            "one trailing dot only"
        );
        assert_eq!(tenant("a.b.api.example.com"), None, "one label only");
        assert_eq!(tenant("api.example.com"), None);
        assert_eq!(tenant(".api.example.com"), None);
        assert_eq!(tenant("acme.api.example.com.evil.net"), None);
        assert_eq!(tenant("acme_api.example.com"), None);
    }

    #[test]
    fn path_segment_and_match() {
        let s = source(r#"{"path": {"segment": 1, "match": {"path_prefix": "/t/"}}}"#);
        let tenant = |path: &str| found(&s, &[(":path", path)]).map(|r| r.tenant);
        assert_eq!(tenant("/t/acme/orders?x=1").as_deref(), Some("acme"));
        assert_eq!(tenant("/t/acme").as_deref(), Some("acme"));
        assert_eq!(tenant("/t/"), None, "empty segment");
        assert_eq!(
            tenant("/t/ac%20me/x"),
            None,
            "encoded bytes are not id characters"
        );
        assert_eq!(tenant("/orders/acme"), None, "outside the match");
    }

    #[test]
    fn default_tenant() {
        let s = source(r#"{"default": {"tenant": "public", "plan": "free"}}"#);
        assert!(s.always_resolves());
        let r = found(&s, &[]).unwrap();
        assert_eq!(
            (r.tenant.as_str(), r.plan.as_deref(), r.source),
            ("public", Some("free"), SourceKind::Default)
        );
        assert!(
            !source(r#"{"default": {"tenant": "p", "match": {"path_prefix": "/p"}}}"#)
                .always_resolves()
        );
    }

    #[test]
    fn bad_sources_name_the_field_and_never_echo_keys() {
        let e = source_err(r#"{"claim": {"header": "x-tenant-id"}}"#);
        assert_eq!(e.field, "claim.header");
        assert!(e.reason.contains("every client copy"), "{}", e.reason);
        let e = source_err(
            r#"{"api_key": {"keys": [{"sha256": "my-secret-api-key", "tenant": "acme"}]}}"#,
        );
        assert_eq!(e.field, "api_key.keys[0].sha256");
        assert!(!e.to_string().contains("my-secret-api-key"), "{e}");
        let e = source_err(r#"{"host": {"suffix": "api.example.com"}}"#);
        assert_eq!(e.field, "host.suffix");
        let e = source_err(r#"{"path": {"segment": 1, "match": {"path_prefix": "t"}}}"#);
        assert_eq!(e.field, "path.match.path_prefix");
        let e = source_err(r#"{"default": {"tenant": "no spaces"}}"#);
        assert_eq!(e.field, "default.tenant");
    }

    #[test]
    fn trust_levels() {
        let credentials: Vec<_> = SourceKind::ALL
            .iter()
            .filter(|k| k.is_credential())
            .map(|k| k.name())
            .collect();
        assert_eq!(credentials, ["claim", "api_key"]);
    }

    #[test]
    fn hex_digests() {
        assert_eq!(parse_sha256_hex(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_sha256_hex(&"AB".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_sha256_hex(&"ab".repeat(31)), None);
        assert_eq!(parse_sha256_hex(&format!("{}zz", "ab".repeat(31))), None);
        assert_eq!(parse_sha256_hex(&format!("+{}", "a".repeat(63))), None);
    }
}
