//! The per-request decision, host-free: find the rule, extract and verify tokens (through the
//! verified-token cache), evaluate the requirement and authorization, and compute the header
//! edits for the upstream. Keys and revocation come in through small traits; time is passed in.

use crate::cache::{TokenCache, VerifiedToken};
use crate::claims;
use crate::config::{FilterConfig, IntrospectionConfig, KeySource, Provider};
use crate::identity::identity_headers;
use crate::introspection::{self, Answer, Lookup};
use crate::jwks::KeySet;
use crate::jwks_cache::KeyRequest;
use crate::outcome::Denial;
use crate::rules::{evaluate, find_rule, Audiences, Governing, ProviderCheck, ProviderId, Verdict};
use crate::token::{self, Extracted, TokenLocation};
use crate::verify::{self, VerifyError};
use base64::Engine as _;
/// The one header-edit type (filter-core's), re-exported where jwt_auth's edits are made.
pub use filter_core::HeaderEdit;
use filter_core::HeaderMap;
use serde_json::{Map, Value};
use std::rc::Rc;
use std::sync::Arc;

/// The remote JWKS machinery as the engine sees it (the glue backs it with shared data and
/// `dispatch_http_call`; tests with a map).
pub trait KeyStore {
    /// The provider's keys if they may be used at `now_ms` (fresh, or stale within max_stale).
    fn keys(&self, provider: ProviderId, now_ms: u64) -> Option<Arc<KeySet>>;
    /// Keys another worker installed since this one last looked (its view is refreshed on a
    /// tick): `Some` only when they differ from what [`Self::keys`] gave. Asked before
    /// [`Self::request_keys`], so a worker never fetches what another one already has.
    fn newer_keys(&mut self, _provider: ProviderId, _now_ms: u64) -> Option<Arc<KeySet>> {
        None
    }
    /// A request needs keys this provider does not have (none yet, or an unknown `kid`).
    fn request_keys(&mut self, provider: ProviderId, now_ms: u64) -> KeyRequest;
    /// What the authorization server says about an opaque token: cached, or `Wait` for the
    /// call in flight (started now if there was none).
    fn introspect(
        &mut self,
        _provider: ProviderId,
        _config: &IntrospectionConfig,
        _token: &str,
        _now_ms: u64,
    ) -> Lookup {
        Lookup::Known(Answer::Unavailable)
    }
}

/// Revocation: a list synced from the revocation service into shared data
/// ([`crate::revocation`]). Checked on every accepted token, cached or not.
pub trait Revocation {
    fn is_revoked(&self, provider: &Provider, claims: &Map<String, Value>) -> bool;
}

/// No revocation list configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocation;

impl Revocation for NoRevocation {
    fn is_revoked(&self, _: &Provider, _: &Map<String, Value>) -> bool {
        false
    }
}

/// The host calls that carry out `edits` on a request whose headers are `headers`: removals
/// of headers the request does not have are dropped (no-ops), and so are removals followed by
/// a set of the same header (a set replaces every value). Each dropped edit is a host call
/// saved on every request.
pub fn host_edits<'a>(edits: &'a [HeaderEdit], headers: &HeaderMap) -> Vec<&'a HeaderEdit> {
    edits
        .iter()
        .enumerate()
        .filter(|(i, e)| match e {
            HeaderEdit::Set(..) | HeaderEdit::Add(..) => true,
            HeaderEdit::Remove(name) => {
                headers.contains(name)
                    && !edits[i + 1..]
                        .iter()
                        .any(|later| matches!(later, HeaderEdit::Set(n, _) if n == name))
            }
        })
        .map(|(_, e)| e)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny(Denial),
    /// Waiting for these providers' key fetches; run [`Authenticator::authenticate`] again
    /// when their keys change or the fetch ends.
    Wait(Vec<ProviderId>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// Apply on `Allow` (and also on `Deny`/`Wait` harmlessly): owned headers removed first,
    /// then claim headers set, tokens removed when `forward` is false.
    pub edits: Vec<HeaderEdit>,
    pub cache_hits: u32,
    pub cache_misses: u32,
    /// Signature checks made for this request (at most [`verify::MAX_CANDIDATES`] per
    /// provider; none for cache hits).
    pub signature_checks: u32,
}

impl Decision {
    fn denied(denial: Denial, edits: Vec<HeaderEdit>) -> Self {
        Decision {
            outcome: Outcome::Deny(denial),
            edits,
            cache_hits: 0,
            cache_misses: 0,
            signature_checks: 0,
        }
    }
}

pub struct Authenticator {
    config: Arc<FilterConfig>,
    cache: TokenCache,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

struct Found {
    token: String,
    location: TokenLocation,
}

/// Per-request memo: each provider is checked at most once.
struct RequestState {
    checks: Vec<Option<ProviderCheck>>,
    found: Vec<Option<Found>>,
    verified: Vec<Option<Rc<VerifiedToken>>>,
    waiting: Vec<ProviderId>,
    hits: u32,
    misses: u32,
    signature_checks: u32,
}

impl Authenticator {
    /// `seed` keys the token cache's hasher; it must be random per VM.
    pub fn new(config: Arc<FilterConfig>, seed: u64) -> Self {
        let cache = TokenCache::new(
            config.providers.len(),
            config.token_cache_entries,
            config.token_cache_max_ttl_secs,
            seed,
        );
        Self { config, cache }
    }

    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// The provider's keys changed: cached verifications must not outlive a removed key.
    pub fn keys_changed(&mut self, provider: ProviderId) {
        self.cache.clear_provider(provider);
    }

    pub fn authenticate(
        &mut self,
        headers: &HeaderMap,
        governing: Governing,
        now_ms: u64,
        keys: &mut dyn KeyStore,
        revocation: &dyn Revocation,
    ) -> Decision {
        let config = Arc::clone(&self.config);
        let sanitize: Vec<HeaderEdit> = config
            .owned_headers
            .iter()
            .map(|h| HeaderEdit::Remove(h.clone()))
            .collect();
        let allow_public = |edits| Decision {
            outcome: Outcome::Allow,
            edits,
            cache_hits: 0,
            cache_misses: 0,
            signature_checks: 0,
        };
        if config.bypass_cors_preflight
            && headers.method().eq_ignore_ascii_case("OPTIONS")
            && headers.contains("origin")
            && headers.contains("access-control-request-method")
        {
            return allow_public(sanitize);
        }
        let rule = match governing {
            Governing::Matchers => find_rule(&config.rules, headers),
            Governing::Named(i) => match config.routes.as_ref().and_then(|b| b.policy(i)) {
                Some(rule) => Some(rule),
                // Not a binding's index: never read as public.
                None => return Decision::denied(Denial::MISSING, sanitize),
            },
            Governing::Public => None,
        };
        let Some(rule) = rule else {
            return allow_public(sanitize);
        };
        let Some(requirement) = &rule.requirement else {
            return allow_public(sanitize);
        };
        let n = config.providers.len();
        let mut st = RequestState {
            checks: vec![None; n],
            found: (0..n).map(|_| None).collect(),
            verified: vec![None; n],
            waiting: Vec::new(),
            hits: 0,
            misses: 0,
            signature_checks: 0,
        };
        let verdict = evaluate(requirement, n, &mut |p, audiences| {
            let c = match &st.checks[p] {
                Some(c) => c.clone(),
                None => {
                    let c = self.check_provider(p, headers, now_ms, keys, revocation, &mut st);
                    st.checks[p] = Some(c.clone());
                    c
                }
            };
            audience_check(&config, p, c, audiences, &st)
        });
        let mut allowed = Vec::new();
        let outcome = match verdict {
            Verdict::Pending => Outcome::Wait(st.waiting.clone()),
            Verdict::Deny(d) => Outcome::Deny(d),
            Verdict::Allow(ids) => match authorize(&rule.authorization, &ids, &st) {
                Ok(()) => {
                    allowed = ids;
                    Outcome::Allow
                }
                Err(d) => Outcome::Deny(d),
            },
        };
        let mut edits = sanitize;
        if outcome == Outcome::Allow {
            upstream_edits(&config, headers, &st, &allowed, &mut edits);
        }
        Decision {
            outcome,
            edits,
            cache_hits: st.hits,
            cache_misses: st.misses,
            signature_checks: st.signature_checks,
        }
    }

    fn check_provider(
        &mut self,
        p: ProviderId,
        headers: &HeaderMap,
        now_ms: u64,
        keys: &mut dyn KeyStore,
        revocation: &dyn Revocation,
        st: &mut RequestState,
    ) -> ProviderCheck {
        let Some(provider) = self.config.providers.get(p) else {
            return ProviderCheck::Missing;
        };
        let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let (token, location) = match provider.sources.extract(headers) {
            Extracted::Missing => return ProviderCheck::Missing,
            Extracted::Invalid(e) => return ProviderCheck::Failed(e.into()),
            Extracted::Found { token, location } => (token, location),
        };
        let introspected = match &provider.keys {
            KeySource::Introspect(cfg) => Some(Arc::clone(cfg)),
            _ => None,
        };
        if introspected
            .as_ref()
            .is_some_and(|c| c.opaque_only && introspection::looks_like_jwt(&token))
        {
            return ProviderCheck::Missing;
        }
        st.found[p] = Some(Found {
            token: token.clone(),
            location,
        });
        if token.len() > self.config.max_token_bytes {
            return ProviderCheck::Failed(token::TokenError::Oversize.into());
        }
        if let Some(cfg) = introspected {
            let answer = match keys.introspect(p, &cfg, &token, now_ms) {
                Lookup::Wait => {
                    st.waiting.push(p);
                    return ProviderCheck::Pending;
                }
                Lookup::Known(answer) => answer,
            };
            return introspected_check(provider, &cfg, answer, now_secs, revocation).map_or_else(
                ProviderCheck::Failed,
                |v| {
                    st.verified[p] = Some(v);
                    ProviderCheck::Verified
                },
            );
        }
        if let Some(v) = self.cache.get(p, &token, now_secs) {
            st.hits += 1;
            if revocation.is_revoked(provider, &v.claims) {
                return ProviderCheck::Failed(Denial::REVOKED);
            }
            st.verified[p] = Some(v);
            return ProviderCheck::Verified;
        }
        st.misses += 1;
        let jwt = match token::parse(&token, self.config.max_token_bytes) {
            Ok(j) => j,
            Err(e) => return ProviderCheck::Failed(e.into()),
        };
        if let Err(check) = verify_signature(provider, p, &jwt, now_ms, keys, st) {
            return check;
        }
        if let Err(e) = provider.claims.check_except_audience(&jwt.claims, now_secs) {
            return ProviderCheck::Failed(e.into());
        }
        // A token whose identity claims are missing or unusable is refused, never admitted
        // without an identity (and never cached).
        let identity = match identity_headers(&provider.claim_headers, &jwt.claims) {
            Ok(h) => h,
            Err(e) => return ProviderCheck::Failed(e.into()),
        };
        if revocation.is_revoked(provider, &jwt.claims) {
            return ProviderCheck::Failed(Denial::REVOKED);
        }
        let verified = Rc::new(VerifiedToken {
            exp: claims::expiry(&jwt.claims),
            payload_b64: jwt.payload_b64.to_string(),
            claims: jwt.claims,
            identity,
        });
        if token.len() <= self.config.token_cache_max_token_bytes {
            self.cache.insert(p, &token, Rc::clone(&verified), now_secs);
        }
        st.verified[p] = Some(verified);
        ProviderCheck::Verified
    }
}

/// An opaque token's introspection answer, held to the provider's policy as a JWT's claims
/// are (time claims, issuer, subject; the audience per requirement), then its identity.
fn introspected_check(
    provider: &Provider,
    cfg: &IntrospectionConfig,
    answer: Answer,
    now_secs: i64,
    revocation: &dyn Revocation,
) -> Result<Rc<VerifiedToken>, Denial> {
    let claims = match answer {
        Answer::Active(c) => c,
        Answer::Inactive => return Err(introspection::INACTIVE),
        Answer::Unavailable => return Err(cfg.unavailable),
    };
    provider.claims.check_except_audience(&claims, now_secs)?;
    let identity = identity_headers(&provider.claim_headers, &claims)?;
    if revocation.is_revoked(provider, &claims) {
        return Err(Denial::REVOKED);
    }
    let json = Value::Object((*claims).clone()).to_string();
    Ok(Rc::new(VerifiedToken {
        exp: claims::expiry(&claims),
        payload_b64: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json),
        claims: (*claims).clone(),
        identity,
    }))
}

/// Checks the token's signature with the provider's keys (at most
/// [`verify::MAX_CANDIDATES`] signature checks, counted in `st`). `Err` is the provider's
/// answer when the signature is not (yet) good: refused, or waiting for keys.
fn verify_signature(
    provider: &Provider,
    p: ProviderId,
    jwt: &token::UnverifiedJwt<'_>,
    now_ms: u64,
    keys: &mut dyn KeyStore,
    st: &mut RequestState,
) -> Result<(), ProviderCheck> {
    let remote = matches!(provider.keys, KeySource::Remote(_));
    let mut set = match &provider.keys {
        KeySource::Local(set) => Arc::clone(set),
        KeySource::Introspect(_) => return Err(ProviderCheck::Missing),
        KeySource::Remote(_) => match keys.keys(p, now_ms).or_else(|| keys.newer_keys(p, now_ms)) {
            Some(set) => set,
            None => return Err(wait_or(keys, p, now_ms, st, Denial::KEYS_UNAVAILABLE)),
        },
    };
    let check = |set: &KeySet, checks: &mut u32| {
        verify::verify_counted(
            set,
            &jwt.header,
            jwt.signing_input.as_bytes(),
            &jwt.signature,
            checks,
        )
    };
    let mut verdict = check(&set, &mut st.signature_checks);
    if verdict == Err(VerifyError::UnknownKid) && remote {
        // Another worker may already have fetched the JWKS that has this kid. (An unknown kid
        // made no signature check, so the bound per token holds.)
        if let Some(newer) = keys.newer_keys(p, now_ms) {
            set = newer;
            verdict = check(&set, &mut st.signature_checks);
        }
    }
    match verdict {
        Ok(()) => Ok(()),
        Err(VerifyError::UnknownKid) if remote => {
            Err(wait_or(keys, p, now_ms, st, VerifyError::UnknownKid.into()))
        }
        Err(e) => Err(ProviderCheck::Failed(e.into())),
    }
}

fn wait_or(
    keys: &mut dyn KeyStore,
    p: ProviderId,
    now_ms: u64,
    st: &mut RequestState,
    refused: Denial,
) -> ProviderCheck {
    match keys.request_keys(p, now_ms) {
        KeyRequest::Fetch | KeyRequest::Wait => {
            st.waiting.push(p);
            ProviderCheck::Pending
        }
        KeyRequest::Refused => ProviderCheck::Failed(refused),
    }
}

/// Passes when one verified token satisfies every scope and claim condition of the rule.
fn authorize(
    authz: &crate::authz::Authorization,
    ids: &[ProviderId],
    st: &RequestState,
) -> Result<(), Denial> {
    if authz.is_empty() {
        return Ok(());
    }
    let mut first_err = None;
    for p in ids {
        if let Some(v) = &st.verified[*p] {
            match authz.check(&v.claims) {
                Ok(()) => return Ok(()),
                Err(e) => first_err = first_err.or(Some(Denial::from(e))),
            }
        }
    }
    Err(first_err.unwrap_or(Denial::MISSING))
}

/// A verified token's audience, against the requirement's audiences or the provider's own.
/// Verification is memoized per provider and cached audience-free; this runs each time.
fn audience_check(
    config: &FilterConfig,
    p: ProviderId,
    check: ProviderCheck,
    audiences: Audiences<'_>,
    st: &RequestState,
) -> ProviderCheck {
    let (ProviderCheck::Verified, Some(v), Some(provider)) =
        (&check, &st.verified[p], config.providers.get(p))
    else {
        return check;
    };
    match provider.claims.check_audience(&v.claims, audiences) {
        Ok(()) => check,
        Err(e) => ProviderCheck::Failed(e.into()),
    }
}

/// `allowed`: the providers whose tokens met the requirement; only they give claim headers.
fn upstream_edits(
    config: &FilterConfig,
    headers: &HeaderMap,
    st: &RequestState,
    allowed: &[ProviderId],
    edits: &mut Vec<HeaderEdit>,
) {
    // Tokens of non-forwarding providers leave the request (whether or not they verified).
    let mut path = headers.path_and_query().to_string();
    let mut cookie = headers.get("cookie").map(str::to_string);
    let (mut path_changed, mut cookie_changed) = (false, false);
    for (p, found) in st.found.iter().enumerate() {
        let (Some(found), Some(provider)) = (found, config.providers.get(p)) else {
            continue;
        };
        if provider.forward {
            continue;
        }
        match &found.location {
            TokenLocation::Header(h) => {
                let edit = HeaderEdit::Remove(h.clone());
                if !edits.contains(&edit) {
                    edits.push(edit);
                }
            }
            TokenLocation::Param(name) => {
                path = token::remove_query_param(&path, name);
                path_changed = true;
            }
            TokenLocation::Cookie(name) => {
                cookie = cookie
                    .as_deref()
                    .and_then(|c| token::remove_cookie(c, name));
                cookie_changed = true;
            }
        }
        let _ = &found.token;
    }
    if path_changed {
        edits.push(HeaderEdit::Set(":path".into(), path));
    }
    if cookie_changed {
        edits.push(match cookie {
            Some(c) => HeaderEdit::Set("cookie".into(), c),
            None => HeaderEdit::Remove("cookie".into()),
        });
    }
    let mut set: Vec<String> = Vec::new();
    let mut put = |edits: &mut Vec<HeaderEdit>, name: &str, value: String| {
        // The first verified provider wins a header; values that could split headers are dropped.
        if !set.iter().any(|s| s == name) && is_header_value(&value) {
            set.push(name.to_string());
            edits.push(HeaderEdit::Set(name.to_string(), value));
        }
    };
    for (p, v) in st.verified.iter().enumerate() {
        let (Some(v), Some(provider)) = (v, config.providers.get(p)) else {
            continue;
        };
        if !allowed.contains(&p) {
            continue;
        }
        // Vetted when the token was verified ([`crate::identity`]).
        for (header, value) in &v.identity {
            put(edits, header, value.clone());
        }
        if let Some(h) = &provider.forward_payload_header {
            put(
                edits,
                h,
                padded(&v.payload_b64, provider.pad_forward_payload_header),
            );
        }
    }
}

/// The token's base64url payload, `=`-padded when the provider asks for it
/// (`pad_forward_payload_header`).
fn padded(payload_b64: &str, pad: bool) -> String {
    let mut out = payload_b64.to_string();
    if pad {
        while !out.len().is_multiple_of(4) {
            out.push('=');
        }
    }
    out
}

fn is_header_value(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}
