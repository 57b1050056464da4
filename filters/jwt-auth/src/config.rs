//! The plugin configuration: Envoy `jwt_authn`'s field names where they exist, validated once
//! into typed providers and rules. Errors name the field (`providers.idp.remote_jwks.path`).
//!
//! Durations are Envoy's JSON form (`"600s"`, `"1.5s"`) or a plain number of seconds.

use crate::authz::{Authorization, ClaimCondition};
use crate::claims::{ClaimPolicy, SubjectMatch};
pub use crate::identity::ClaimHeader;
use crate::identity::{Charset, ClaimFormat, MAX_MAX_LENGTH};
use crate::jwks::{JwksOrigin, KeyPolicy, KeySet};
use crate::jwks_cache::JwksPolicy;
pub use crate::revocation::RevocationConfig;
use crate::rules::{Requirement, Rule};
use crate::token::{HeaderSource, TokenSources};
use crate::verify::rsa::{MAX_BITS as RSA_MAX_BITS, MIN_BITS as RSA_MIN_BITS};
use filter_core::{parse_json_config, ConfigError, RequestMatch};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
pub const DEFAULT_REALM: &str = "edgegate";
pub const USER_ID_HEADER: &str = "x-user-id";
pub const DEFAULT_TENANT_HEADER: &str = "x-tenant-id";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    pub max_token_bytes: usize,
    pub realm: String,
    pub bypass_cors_preflight: bool,
    pub token_cache_entries: usize,
    pub token_cache_max_ttl_secs: u64,
    /// Every header this filter may set upstream: removed from every request first.
    pub owned_headers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub claims: ClaimPolicy,
    pub keys: KeySource,
    pub sources: TokenSources,
    pub forward: bool,
    pub forward_payload_header: Option<String>,
    /// The identity headers, each from a vetted claim ([`crate::identity`]): `sub` into
    /// `x-user-id` first, then `claim_to_headers`, then the tenant header.
    pub claim_headers: Vec<ClaimHeader>,
    /// Checked against the revocation list synced from this service.
    pub revocation: Option<RevocationConfig>,
    /// Limits on the keys of this provider's JWKS (local or remote).
    pub key_policy: KeyPolicy,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    Local(Arc<KeySet>),
    Remote(RemoteJwks),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    /// `:authority` of the fetch (from `uri`, else the cluster name).
    pub authority: String,
    pub path: String,
    pub policy: JwksPolicy,
}

impl FilterConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_json_config(bytes)?;
        raw.validate()
    }

    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }
}

/// A duration in milliseconds: `"600s"`, `"0.5s"` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Millis(u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECT: &str = "a duration such as \"600s\" or a number of seconds";
        fn from_secs<E: de::Error>(secs: f64) -> Result<Millis, E> {
            if secs.is_finite() && (0.0..=1e10).contains(&secs) {
                Ok(Millis((secs * 1000.0).round() as u64))
            } else {
                Err(E::custom(format!(
                    "expected {EXPECT}, not a negative or huge number"
                )))
            }
        }
        impl Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECT)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                from_secs(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                from_secs(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Millis, E> {
                from_secs(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                let num = v.strip_suffix('s').filter(|n| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                });
                match num.and_then(|n| n.parse::<f64>().ok()) {
                    Some(secs) => from_secs(secs),
                    None => Err(E::custom(format!("expected {EXPECT}, got {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    max_token_bytes: Option<usize>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    bypass_cors_preflight: Option<bool>,
    #[serde(default)]
    token_cache: Option<RawTokenCache>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenCache {
    #[serde(default)]
    max_entries: Option<usize>,
    #[serde(default)]
    max_ttl: Option<Millis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    subjects: Option<RawStringMatch>,
    #[serde(default)]
    require_expiration: bool,
    #[serde(default)]
    max_lifetime: Option<Millis>,
    #[serde(default)]
    clock_skew_seconds: Option<u64>,
    #[serde(default)]
    remote_jwks: Option<RawRemoteJwks>,
    #[serde(default)]
    local_jwks: Option<RawLocalJwks>,
    #[serde(default)]
    from_headers: Vec<RawHeaderSource>,
    #[serde(default)]
    from_params: Vec<String>,
    #[serde(default)]
    from_cookies: Vec<String>,
    #[serde(default)]
    forward: bool,
    #[serde(default)]
    forward_payload_header: Option<String>,
    #[serde(default)]
    claim_to_headers: Vec<RawClaimToHeader>,
    #[serde(default)]
    tenant_claim: Option<String>,
    #[serde(default)]
    tenant_header: Option<String>,
    #[serde(default)]
    tenant_format: Option<RawClaimFormat>,
    #[serde(default)]
    sub_format: Option<RawClaimFormat>,
    #[serde(default)]
    max_rsa_key_bits: Option<u32>,
    #[serde(default)]
    revocation: Option<RawRevocation>,
}

/// How an identity claim must look (`sub_format`, `tenant_format`, and the same fields on
/// each `claim_to_headers` entry).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimFormat {
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    charset: Option<String>,
    #[serde(default)]
    max_length: Option<usize>,
}

impl RawClaimFormat {
    /// `integers`: whether an integer claim may stand for its decimal text.
    fn validate(self, integers: bool) -> Result<ClaimFormat, ConfigError> {
        let d = ClaimFormat::default();
        let charset = match self.charset {
            Some(spec) => Charset::parse(&spec).map_err(|why| err("charset", why))?,
            None => d.charset,
        };
        let max_length = self.max_length.unwrap_or(d.max_length);
        if !(1..=MAX_MAX_LENGTH).contains(&max_length) {
            return Err(err(
                "max_length",
                format!("must be between 1 and {MAX_MAX_LENGTH}"),
            ));
        }
        Ok(ClaimFormat {
            optional: self.optional,
            charset,
            max_length,
            integers,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    cluster: String,
    #[serde(default)]
    sync_interval: Option<Millis>,
    #[serde(default)]
    timeout: Option<Millis>,
}

impl RawRevocation {
    fn validate(self) -> Result<RevocationConfig, ConfigError> {
        if self.cluster.is_empty() {
            return Err(err("cluster", "must name an Envoy cluster (HTTP/2)"));
        }
        let sync_interval_ms = self.sync_interval.map_or(5_000, |m| m.0);
        if !(500..=3_600_000).contains(&sync_interval_ms) {
            return Err(err("sync_interval", "must be between 500ms and 1h"));
        }
        let timeout_ms = self.timeout.map_or(2_000, |m| m.0);
        if !(1..=60_000).contains(&timeout_ms) {
            return Err(err("timeout", "must be between 1ms and 60s"));
        }
        Ok(RevocationConfig {
            cluster: self.cluster,
            sync_interval_ms,
            timeout_ms,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStringMatch {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteJwks {
    cluster: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    timeout: Option<Millis>,
    #[serde(default)]
    cache_duration: Option<Millis>,
    #[serde(default)]
    max_stale: Option<Millis>,
    #[serde(default)]
    kid_refetch_interval: Option<Millis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocalJwks {
    /// The JWKS as a JSON string (Envoy's `inline_string`) or as an object.
    #[serde(alias = "inline_string")]
    inline: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderSource {
    name: String,
    #[serde(default)]
    value_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimToHeader {
    header_name: String,
    claim_name: String,
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    charset: Option<String>,
    #[serde(default)]
    max_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match", default)]
    matcher: RequestMatch,
    #[serde(default)]
    requires: Option<RawRequirement>,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default)]
    required_claims: Vec<RawClaimCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    #[serde(default)]
    provider_name: Option<String>,
    #[serde(default)]
    requires_any: Option<RawRequirementList>,
    #[serde(default)]
    requires_all: Option<RawRequirementList>,
    #[serde(default)]
    allow_missing: Option<Empty>,
    #[serde(default)]
    allow_missing_or_failed: Option<Empty>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirementList {
    requirements: Vec<RawRequirement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimCondition {
    name: String,
    #[serde(default)]
    contains: Option<String>,
    #[serde(default)]
    equals: Option<String>,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

/// A header name this filter may read or write: an HTTP token, stored lower-case.
fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    if filter_core::headers::is_token(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(err(field, format!("{name:?} is not a valid header name")))
    }
}

impl RawConfig {
    fn validate(self) -> Result<FilterConfig, ConfigError> {
        if self.providers.is_empty() {
            return Err(err("providers", "at least one provider is required"));
        }
        let names: Vec<String> = self.providers.keys().cloned().collect();
        let mut providers = Vec::with_capacity(self.providers.len());
        for (name, raw) in self.providers {
            let field = format!("providers.{name}");
            providers.push(raw.validate(&name).map_err(|e| e.within(&field))?);
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, raw) in self.rules.into_iter().enumerate() {
            rules.push(
                raw.validate(&names)
                    .map_err(|e| e.within(&format!("rules[{i}]")))?,
            );
        }
        let max_token_bytes = self.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        if !(64..=65536).contains(&max_token_bytes) {
            return Err(err("max_token_bytes", "must be between 64 and 65536"));
        }
        let realm = self.realm.unwrap_or_else(|| DEFAULT_REALM.to_string());
        if realm.is_empty()
            || !realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(err(
                "realm",
                "must be printable ASCII without quotes or backslashes",
            ));
        }
        let (entries, ttl) = match self.token_cache {
            Some(c) => (
                c.max_entries.unwrap_or(1024),
                c.max_ttl.map_or(300, |m| m.0 / 1000),
            ),
            None => (1024, 300),
        };
        if entries == 0 || entries > 1_000_000 {
            return Err(err(
                "token_cache.max_entries",
                "must be between 1 and 1000000",
            ));
        }
        let mut owned_headers = vec![USER_ID_HEADER.to_string()];
        for p in &providers {
            let set = p
                .claim_headers
                .iter()
                .map(|c| &c.header)
                .chain(&p.forward_payload_header);
            for h in set {
                if !owned_headers.contains(h) {
                    owned_headers.push(h.clone());
                }
            }
        }
        Ok(FilterConfig {
            providers,
            rules,
            max_token_bytes,
            realm,
            bypass_cors_preflight: self.bypass_cors_preflight.unwrap_or(true),
            token_cache_entries: entries,
            token_cache_max_ttl_secs: ttl,
            owned_headers,
        })
    }
}

impl RawProvider {
    fn validate(self, name: &str) -> Result<Provider, ConfigError> {
        if name.is_empty() {
            return Err(err("", "provider names must not be empty"));
        }
        let (keys, key_policy) =
            key_source(self.remote_jwks, self.local_jwks, self.max_rsa_key_bits)?;
        for (i, a) in self.audiences.iter().enumerate() {
            if a.is_empty() {
                return Err(err(format!("audiences[{i}]"), "must not be empty"));
            }
        }
        let subjects = match self.subjects {
            None => None,
            Some(RawStringMatch {
                exact: Some(e),
                prefix: None,
            }) => Some(SubjectMatch::Exact(e)),
            Some(RawStringMatch {
                exact: None,
                prefix: Some(p),
            }) => Some(SubjectMatch::Prefix(p)),
            Some(_) => return Err(err("subjects", "give exactly one of exact and prefix")),
        };
        if self.issuer.as_deref() == Some("") {
            return Err(err(
                "issuer",
                "must not be empty (omit it to accept any issuer)",
            ));
        }
        let claims = ClaimPolicy {
            issuer: self.issuer,
            audiences: self.audiences,
            subjects,
            require_expiration: self.require_expiration,
            max_lifetime_secs: self.max_lifetime.map(|m| m.0 / 1000),
            clock_skew_secs: self.clock_skew_seconds.unwrap_or(60),
        };
        if claims.clock_skew_secs > 3600 {
            return Err(err("clock_skew_seconds", "must be at most 3600"));
        }
        let sources = token_sources(self.from_headers, self.from_params, self.from_cookies)?;
        let claim_headers = identity_headers(
            self.sub_format,
            self.claim_to_headers,
            self.tenant_claim,
            self.tenant_header,
            self.tenant_format,
        )?;
        let forward_payload_header = self
            .forward_payload_header
            .map(|h| header_name("forward_payload_header", &h))
            .transpose()?;
        let revocation = self
            .revocation
            .map(|r| r.validate().map_err(|e| e.within("revocation")))
            .transpose()?;
        Ok(Provider {
            name: name.to_string(),
            claims,
            keys,
            sources,
            forward: self.forward,
            forward_payload_header,
            claim_headers,
            revocation,
            key_policy,
        })
    }
}

/// The provider's keys (exactly one of remote and local) and the limits they are held to.
fn key_source(
    remote: Option<RawRemoteJwks>,
    local: Option<RawLocalJwks>,
    max_rsa_key_bits: Option<u32>,
) -> Result<(KeySource, KeyPolicy), ConfigError> {
    let max_rsa_bits = max_rsa_key_bits.unwrap_or(KeyPolicy::default().max_rsa_bits);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&max_rsa_bits) {
        return Err(err(
            "max_rsa_key_bits",
            format!("must be between {RSA_MIN_BITS} and {RSA_MAX_BITS}"),
        ));
    }
    let policy = KeyPolicy { max_rsa_bits };
    let keys = match (remote, local) {
        (Some(r), None) => KeySource::Remote(r.validate().map_err(|e| e.within("remote_jwks"))?),
        (None, Some(l)) => {
            KeySource::Local(l.validate(&policy).map_err(|e| e.within("local_jwks"))?)
        }
        _ => return Err(err("", "give exactly one of remote_jwks and local_jwks")),
    };
    Ok((keys, policy))
}

/// Where the provider's token is looked for (`Authorization: Bearer` when nothing is given).
fn token_sources(
    from_headers: Vec<RawHeaderSource>,
    params: Vec<String>,
    cookies: Vec<String>,
) -> Result<TokenSources, ConfigError> {
    let mut sources = TokenSources {
        headers: Vec::new(),
        params,
        cookies,
    };
    for (i, h) in from_headers.into_iter().enumerate() {
        let name = header_name(&format!("from_headers[{i}].name"), &h.name)?;
        sources.headers.push(HeaderSource {
            name,
            value_prefix: h.value_prefix.unwrap_or_default(),
        });
    }
    for (i, p) in sources.params.iter().enumerate() {
        if p.is_empty() {
            return Err(err(format!("from_params[{i}]"), "must not be empty"));
        }
    }
    for (i, c) in sources.cookies.iter().enumerate() {
        if c.is_empty() {
            return Err(err(format!("from_cookies[{i}]"), "must not be empty"));
        }
    }
    if sources.headers.is_empty() && sources.params.is_empty() && sources.cookies.is_empty() {
        sources = TokenSources::default();
    }
    Ok(sources)
}

/// The provider's identity headers: `sub` into `x-user-id`, `claim_to_headers`, the tenant.
fn identity_headers(
    sub_format: Option<RawClaimFormat>,
    claim_to_headers: Vec<RawClaimToHeader>,
    tenant_claim: Option<String>,
    tenant_header: Option<String>,
    tenant_format: Option<RawClaimFormat>,
) -> Result<Vec<ClaimHeader>, ConfigError> {
    let sub = sub_format
        .unwrap_or_default()
        .validate(false)
        .map_err(|e| e.within("sub_format"))?;
    let mut out = vec![ClaimHeader {
        header: USER_ID_HEADER.to_string(),
        claim: "sub".to_string(),
        format: sub,
    }];
    for (i, c) in claim_to_headers.into_iter().enumerate() {
        let field = format!("claim_to_headers[{i}]");
        let header = header_name(&format!("{field}.header_name"), &c.header_name)?;
        if c.claim_name.is_empty() {
            return Err(err(format!("{field}.claim_name"), "must not be empty"));
        }
        let format = RawClaimFormat {
            optional: c.optional,
            charset: c.charset,
            max_length: c.max_length,
        }
        .validate(true)
        .map_err(|e| e.within(&field))?;
        out.push(ClaimHeader {
            header,
            claim: c.claim_name,
            format,
        });
    }
    match (tenant_claim, tenant_header) {
        (Some(claim), header) => {
            if claim.is_empty() {
                return Err(err("tenant_claim", "must not be empty"));
            }
            let header = header_name(
                "tenant_header",
                header.as_deref().unwrap_or(DEFAULT_TENANT_HEADER),
            )?;
            let format = tenant_format
                .unwrap_or_default()
                .validate(true)
                .map_err(|e| e.within("tenant_format"))?;
            out.push(ClaimHeader {
                header,
                claim,
                format,
            });
        }
        (None, Some(_)) => return Err(err("tenant_header", "needs tenant_claim")),
        (None, None) if tenant_format.is_some() => {
            return Err(err("tenant_format", "needs tenant_claim"))
        }
        (None, None) => {}
    }
    Ok(out)
}

impl RawRemoteJwks {
    fn validate(self) -> Result<RemoteJwks, ConfigError> {
        if self.cluster.is_empty() {
            return Err(err("cluster", "must name an Envoy cluster"));
        }
        let (authority, path) = match (self.path, self.uri) {
            (Some(p), None) => (self.cluster.clone(), p),
            (None, Some(uri)) => {
                let rest = uri
                    .strip_prefix("https://")
                    .or_else(|| uri.strip_prefix("http://"))
                    .ok_or_else(|| err("uri", "must start with http:// or https://"))?;
                match rest.find('/') {
                    Some(i) if i > 0 => (rest[..i].to_string(), rest[i..].to_string()),
                    _ => return Err(err("uri", "must have a host and a path")),
                }
            }
            _ => return Err(err("path", "give exactly one of path and uri")),
        };
        if !path.starts_with('/') {
            return Err(err("path", "must start with '/'"));
        }
        let d = JwksPolicy::default();
        let policy = JwksPolicy {
            cache_duration_ms: self.cache_duration.map_or(d.cache_duration_ms, |m| m.0),
            max_stale_ms: self.max_stale.map_or(d.max_stale_ms, |m| m.0),
            fetch_timeout_ms: self.timeout.map_or(d.fetch_timeout_ms, |m| m.0),
            kid_refetch_interval_ms: self
                .kid_refetch_interval
                .map_or(d.kid_refetch_interval_ms, |m| m.0),
            ..d
        };
        if policy.cache_duration_ms < 1000 {
            return Err(err("cache_duration", "must be at least 1s"));
        }
        if !(1..=60_000).contains(&policy.fetch_timeout_ms) {
            return Err(err("timeout", "must be between 1ms and 60s"));
        }
        Ok(RemoteJwks {
            cluster: self.cluster,
            authority,
            path,
            policy,
        })
    }
}

impl RawLocalJwks {
    fn validate(self, policy: &KeyPolicy) -> Result<Arc<KeySet>, ConfigError> {
        let doc = match self.inline {
            Value::String(s) => serde_json::from_str::<Value>(&s)
                .map_err(|e| err("inline", format!("not JSON: {e}")))?,
            obj @ Value::Object(_) => obj,
            _ => {
                return Err(err(
                    "inline",
                    "must be a JWKS object or a string holding one",
                ))
            }
        };
        KeySet::from_value_with(&doc, JwksOrigin::Local, policy)
            .map(Arc::new)
            .map_err(|e| err("inline", e.to_string()))
    }
}

impl RawRule {
    fn validate(self, providers: &[String]) -> Result<Rule, ConfigError> {
        let matcher = self.matcher.compile().map_err(|e| e.within("match"))?;
        let requirement = self
            .requires
            .map(|r| r.validate(providers).map_err(|e| e.within("requires")))
            .transpose()?;
        let mut required_claims = Vec::new();
        for (i, c) in self.required_claims.into_iter().enumerate() {
            let field = format!("required_claims[{i}]");
            if c.name.is_empty() {
                return Err(err(format!("{field}.name"), "must not be empty"));
            }
            required_claims.push(match (c.contains, c.equals) {
                (Some(v), None) => ClaimCondition::Contains {
                    claim: c.name,
                    value: v,
                },
                (None, Some(v)) => ClaimCondition::Equals {
                    claim: c.name,
                    value: v,
                },
                _ => return Err(err(field, "give exactly one of contains and equals")),
            });
        }
        let authorization = Authorization {
            required_scopes: self.required_scopes,
            required_claims,
        };
        if requirement.is_none() && !authorization.is_empty() {
            return Err(err(
                "requires",
                "required_scopes and required_claims need a requirement",
            ));
        }
        if authorization
            .required_scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(' '))
        {
            return Err(err(
                "required_scopes",
                "scopes must be non-empty and without spaces",
            ));
        }
        Ok(Rule {
            matcher,
            requirement,
            authorization,
        })
    }
}

impl RawRequirement {
    fn validate(self, providers: &[String]) -> Result<Requirement, ConfigError> {
        let set = [
            self.provider_name.is_some(),
            self.requires_any.is_some(),
            self.requires_all.is_some(),
            self.allow_missing.is_some(),
            self.allow_missing_or_failed.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(err(
                "",
                "give exactly one of provider_name, requires_any, requires_all, allow_missing, allow_missing_or_failed",
            ));
        }
        if let Some(name) = self.provider_name {
            return providers
                .iter()
                .position(|p| *p == name)
                .map(Requirement::Provider)
                .ok_or_else(|| err("provider_name", format!("unknown provider {name:?}")));
        }
        let list = |l: RawRequirementList, field: &str| -> Result<Vec<Requirement>, ConfigError> {
            if l.requirements.is_empty() {
                return Err(err(format!("{field}.requirements"), "must not be empty"));
            }
            l.requirements
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    r.validate(providers)
                        .map_err(|e| e.within(&format!("{field}.requirements[{i}]")))
                })
                .collect()
        };
        if let Some(l) = self.requires_any {
            return list(l, "requires_any").map(Requirement::Any);
        }
        if let Some(l) = self.requires_all {
            return list(l, "requires_all").map(Requirement::All);
        }
        if self.allow_missing.is_some() {
            return Ok(Requirement::AllowMissing);
        }
        Ok(Requirement::AllowMissingOrFailed)
    }
}
