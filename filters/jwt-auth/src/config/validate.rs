//! Validation of the configuration as written ([`super::raw`]) into [`super::FilterConfig`]:
//! the document, each provider (keys, token sources, identity headers, revocation). Errors
//! name the field, relative to the part being validated (callers prefix it with `within`).

use super::raw::{
    RawClaimFormat, RawClaimToHeader, RawConfig, RawHeaderSource, RawLocalJwks, RawProvider,
    RawRemoteJwks, RawRevocation, RawStringMatch,
};
use super::{
    FilterConfig, KeySource, Provider, RemoteJwks, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_REALM,
    DEFAULT_TENANT_HEADER, USER_ID_HEADER,
};
use crate::claims::{ClaimPolicy, SubjectMatch};
use crate::identity::{Charset, ClaimFormat, ClaimHeader, MAX_MAX_LENGTH};
use crate::jwks::{JwksOrigin, KeyPolicy, KeySet};
use crate::jwks_cache::JwksPolicy;
use crate::revocation::RevocationConfig;
use crate::token::{HeaderSource, TokenSources};
use crate::verify::rsa::{MAX_BITS as RSA_MAX_BITS, MIN_BITS as RSA_MIN_BITS};
use filter_core::config::header_name;
use filter_core::route::check_forms;
use filter_core::ConfigError;
use serde_json::Value;
use std::sync::Arc;

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

pub(super) fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<FilterConfig, ConfigError> {
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
        let named = ("requirements", self.requirements.is_some());
        let routes_given = !self.routes.is_empty();
        check_forms(
            named,
            "requirements",
            routes_given,
            ("rules", !rules.is_empty()),
        )?;
        let routes = match self.requirements {
            Some(r) => Some(super::rules::route_binding(r, self.routes, &names)?),
            None => None,
        };
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
            routes,
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
