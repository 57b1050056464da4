//! Validation of the configuration as written ([`super::raw`]) into [`super::FilterConfig`]:
//! the document, each provider (keys, token sources, identity headers, revocation). Errors
//! name the field, relative to the part being validated (callers prefix it with `within`).

use super::native::{self, RawJwtCacheConfig};
use super::raw::{
    RawClaimFormat, RawClaimToHeader, RawConfig, RawHeaderSource, RawLocalJwks, RawProvider,
    RawRemoteJwks, RawRevocation, RawTokenCache,
};
use super::{
    FilterConfig, KeySource, Provider, RemoteJwks, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_REALM,
    DEFAULT_TENANT_HEADER, USER_ID_HEADER,
};
use crate::claims::ClaimPolicy;
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
        native::refuse_top_level(
            self.type_url.as_deref(),
            self.filter_state_rules.is_some(),
            self.strip_failure_response,
            self.stat_prefix.as_deref(),
        )?;
        if self.providers.is_empty() {
            return Err(err("providers", "at least one provider is required"));
        }
        let names: Vec<String> = self.providers.keys().cloned().collect();
        let mut providers = Vec::with_capacity(self.providers.len());
        let mut native_caches = Vec::new();
        for (name, mut raw) in self.providers {
            let field = format!("providers.{name}");
            if let Some(c) = raw.jwt_cache_config.take() {
                native_caches.push((field.clone(), c));
            }
            providers.push(raw.validate(&name).map_err(|e| e.within(&field))?);
        }
        let (named, binding) = match (self.requirement_map, self.requirements) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "requirement_map",
                    "give requirements or requirement_map (native), not both",
                ))
            }
            // Native rules name the map's entries; routes do not.
            (Some(map), None) if !self.rules.is_empty() => {
                (super::rules::requirement_map(map, &names)?, None)
            }
            (Some(map), None) => (
                Vec::new(),
                Some(("requirement_map", super::rules::map_as_policies(map))),
            ),
            (None, r) => (Vec::new(), r.map(|r| ("requirements", r))),
        };
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, raw) in self.rules.into_iter().enumerate() {
            rules.push(
                raw.validate(&names, &named)
                    .map_err(|e| e.within(&format!("rules[{i}]")))?,
            );
        }
        let named_field = binding.as_ref().map_or("requirements", |(f, _)| *f);
        check_forms(
            (named_field, binding.is_some()),
            "requirements",
            !self.routes.is_empty(),
            ("rules", !rules.is_empty()),
        )?;
        let routes = match binding {
            Some((field, r)) => Some(super::rules::route_binding(field, r, self.routes, &names)?),
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
        let cache = token_cache(self.token_cache, native_caches, max_token_bytes)?;
        let owned_headers = owned_headers(&providers);
        Ok(FilterConfig {
            providers,
            rules,
            routes,
            max_token_bytes,
            realm,
            bypass_cors_preflight: self.bypass_cors_preflight.unwrap_or(true),
            token_cache_entries: cache.entries,
            token_cache_max_ttl_secs: cache.max_ttl_secs,
            token_cache_max_token_bytes: cache.max_token_bytes,
            owned_headers,
        })
    }
}

/// Every header the filter may set upstream, `x-user-id` first.
fn owned_headers(providers: &[Provider]) -> Vec<String> {
    let mut owned = vec![USER_ID_HEADER.to_string()];
    for p in providers {
        let set = p
            .claim_headers
            .iter()
            .map(|c| &c.header)
            .chain(&p.forward_payload_header);
        for h in set {
            if !owned.contains(h) {
                owned.push(h.clone());
            }
        }
    }
    owned
}

struct CacheLimits {
    entries: usize,
    max_ttl_secs: u64,
    max_token_bytes: usize,
}

/// The verified-token cache: ours (`token_cache`) or from the providers' native
/// `jwt_cache_config` (one cache for the filter: the largest size and token size given).
fn token_cache(
    ours: Option<RawTokenCache>,
    native: Vec<(String, RawJwtCacheConfig)>,
    max_token_bytes: usize,
) -> Result<CacheLimits, ConfigError> {
    let mut limits = CacheLimits {
        entries: 1024,
        max_ttl_secs: 300,
        max_token_bytes,
    };
    match (ours, native.first()) {
        (Some(_), Some((field, _))) => {
            return Err(err(
                format!("{field}.jwt_cache_config"),
                "give token_cache or the providers' jwt_cache_config (native), not both",
            ))
        }
        (Some(c), None) => {
            limits.entries = c.max_entries.unwrap_or(limits.entries);
            limits.max_ttl_secs = c.max_ttl.map_or(limits.max_ttl_secs, |m| m.0 / 1000);
        }
        (None, Some(_)) => {
            // Envoy's defaults: 100 tokens of up to 4096 bytes.
            let size = |c: &RawJwtCacheConfig| c.jwt_cache_size.filter(|n| *n > 0).unwrap_or(100);
            let bytes = |c: &RawJwtCacheConfig| c.jwt_max_token_size.filter(|n| *n > 0);
            limits.entries = native.iter().map(|(_, c)| size(c)).max().unwrap_or(100);
            limits.max_token_bytes = native
                .iter()
                .map(|(_, c)| bytes(c).unwrap_or(4096))
                .max()
                .unwrap_or(4096);
        }
        (None, None) => {}
    }
    if limits.entries == 0 || limits.entries > 1_000_000 {
        return Err(err(
            "token_cache.max_entries",
            "must be between 1 and 1000000",
        ));
    }
    Ok(limits)
}

impl RawProvider {
    fn validate(self, name: &str) -> Result<Provider, ConfigError> {
        if name.is_empty() {
            return Err(err("", "provider names must not be empty"));
        }
        if let Some((field, why)) = native::refused_provider_field(&self) {
            return Err(err(field, why));
        }
        let (keys, key_policy) = key_source(
            self.remote_jwks,
            self.local_jwks,
            self.introspection,
            self.max_rsa_key_bits,
        )?;
        for (i, a) in self.audiences.iter().enumerate() {
            if a.is_empty() {
                return Err(err(format!("audiences[{i}]"), "must not be empty"));
            }
        }
        let subjects = self
            .subjects
            .map(|s| s.compile().map_err(|e| e.within("subjects")))
            .transpose()?;
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
            pad_forward_payload_header: self.pad_forward_payload_header,
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
    introspection: Option<super::introspection::RawIntrospection>,
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
    let keys = match (remote, local, introspection) {
        (Some(r), None, None) => {
            KeySource::Remote(r.validate().map_err(|e| e.within("remote_jwks"))?)
        }
        (None, Some(l), None) => {
            KeySource::Local(l.validate(&policy).map_err(|e| e.within("local_jwks"))?)
        }
        (None, None, Some(i)) => KeySource::Introspect(Arc::new(
            i.validate().map_err(|e| e.within("introspection"))?,
        )),
        _ => {
            return Err(err(
                "",
                "give exactly one of remote_jwks, local_jwks and introspection",
            ))
        }
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
        let flat = self.path.is_some() || self.uri.is_some() || self.timeout.is_some();
        let (cluster, path, uri, timeout) = match (self.http_uri, self.cluster) {
            (Some(h), None) if !flat => (h.cluster, None, Some(h.uri), h.timeout),
            (Some(_), _) => {
                return Err(err(
                    "http_uri",
                    "give http_uri {uri, cluster, timeout} or the flat cluster, uri or path and timeout, not both",
                ))
            }
            (None, Some(c)) => (c, self.path, self.uri, self.timeout),
            (None, None) => {
                return Err(err(
                    "http_uri",
                    "give http_uri {uri, cluster, timeout}, or cluster with uri or path",
                ))
            }
        };
        let at = |f: &str| {
            if flat {
                f.to_string()
            } else {
                format!("http_uri.{f}")
            }
        };
        if cluster.is_empty() {
            return Err(err(at("cluster"), "must name an Envoy cluster"));
        }
        let (authority, path) = match (path, uri) {
            (Some(p), None) => (cluster.clone(), p),
            (None, Some(uri)) => split_uri(&uri).map_err(|why| err(at("uri"), why))?,
            _ => return Err(err("path", "give exactly one of path and uri")),
        };
        if !path.starts_with('/') {
            return Err(err("path", "must start with '/'"));
        }
        let d = JwksPolicy::default();
        let mut policy = JwksPolicy {
            cache_duration_ms: self.cache_duration.map_or(d.cache_duration_ms, |m| m.0),
            max_stale_ms: self.max_stale.map_or(d.max_stale_ms, |m| m.0),
            fetch_timeout_ms: timeout.map_or(d.fetch_timeout_ms, |m| m.0),
            kid_refetch_interval_ms: self
                .kid_refetch_interval
                .map_or(d.kid_refetch_interval_ms, |m| m.0),
            ..d
        };
        if policy.cache_duration_ms < 1000 {
            return Err(err("cache_duration", "must be at least 1s"));
        }
        if !(1..=60_000).contains(&policy.fetch_timeout_ms) {
            return Err(err(at("timeout"), "must be between 1ms and 60s"));
        }
        backoff(&mut policy, self.async_fetch, self.retry_policy)?;
        Ok(RemoteJwks {
            cluster,
            authority,
            path,
            policy,
        })
    }
}

/// `http(s)://host/path` -> (authority, path).
pub(super) fn split_uri(uri: &str) -> Result<(String, String), &'static str> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    match rest.find('/') {
        Some(i) if i > 0 => Ok((rest[..i].to_string(), rest[i..].to_string())),
        _ => Err("must have a host and a path"),
    }
}

/// The fetch backoff from native `async_fetch.failed_refetch_duration` or
/// `retry_policy.retry_back_off` (its max defaulting to ten times the base, as in Envoy).
fn backoff(
    policy: &mut JwksPolicy,
    async_fetch: Option<native::RawAsyncFetch>,
    retry: Option<native::RawRetryPolicy>,
) -> Result<(), ConfigError> {
    let refetch = async_fetch.and_then(|a| a.failed_refetch_duration);
    let back_off = retry.and_then(|r| r.retry_back_off);
    let (field, initial, max) =
        match (refetch, back_off) {
            (Some(_), Some(_)) => return Err(err(
                "retry_policy.retry_back_off",
                "give async_fetch.failed_refetch_duration or retry_policy.retry_back_off, not both",
            )),
            (Some(r), None) => (
                "async_fetch.failed_refetch_duration",
                r.0,
                policy.backoff_max_ms.max(r.0),
            ),
            (None, Some(b)) => {
                let max = b
                    .max_interval
                    .map_or(b.base_interval.0.saturating_mul(10), |m| m.0);
                ("retry_policy.retry_back_off", b.base_interval.0, max)
            }
            (None, None) => return Ok(()),
        };
    if !(1..=3_600_000).contains(&initial) || max < initial || max > 3_600_000 {
        return Err(err(
            field,
            "the first delay must be between 1ms and 1h, and the max between it and 1h",
        ));
    }
    policy.backoff_initial_ms = initial;
    policy.backoff_max_ms = max;
    Ok(())
}

impl RawLocalJwks {
    fn validate(self, policy: &KeyPolicy) -> Result<Arc<KeySet>, ConfigError> {
        if self.filename.is_some() {
            return Err(err(
                "filename",
                "a wasm filter reads no files: put the JWKS in inline_string (Istio: in the \
                 WasmPlugin's pluginConfig), or serve it and use remote_jwks",
            ));
        }
        if self.environment_variable.is_some() {
            return Err(err(
                "environment_variable",
                "a wasm filter reads no environment: put the JWKS in inline_string, or serve \
                 it and use remote_jwks",
            ));
        }
        let (field, doc) = match (self.inline, self.inline_bytes) {
            (Some(Value::String(s)), None) => ("inline", parse_jwks_text(&s)?),
            (Some(obj @ Value::Object(_)), None) => ("inline", obj),
            (Some(_), None) => {
                return Err(err(
                    "inline",
                    "must be a JWKS object or a string holding one",
                ))
            }
            (None, Some(b64)) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| err("inline_bytes", format!("not base64: {e}")))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| err("inline_bytes", "does not decode to UTF-8 text"))?;
                (
                    "inline_bytes",
                    parse_jwks_text(&text).map_err(|e| err("inline_bytes", e.reason))?,
                )
            }
            _ => {
                return Err(err(
                    "",
                    "give exactly one of inline_string and inline_bytes",
                ))
            }
        };
        KeySet::from_value_with(&doc, JwksOrigin::Local, policy)
            .map(Arc::new)
            .map_err(|e| err(field, e.to_string()))
    }
}

fn parse_jwks_text(s: &str) -> Result<Value, ConfigError> {
    serde_json::from_str::<Value>(s).map_err(|e| err("inline", format!("not JSON: {e}")))
}
