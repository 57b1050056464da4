//! OAuth 2.0 token introspection (RFC 7662) for opaque tokens: a provider whose tokens are
//! checked by asking the authorization server, with one call per token per worker at a time
//! (concurrent requests with the same new token wait for the one call), answers cached per
//! worker (active until `min(exp, cache_duration)`, inactive for `negative_cache_duration`)
//! and keyed by the full token text, compared in full as the verified-token cache is.
//!
//! The active answer's members are the token's claims (`sub`, `scope`, `aud`, `exp`,
//! `client_id`, ...), held to the provider's policy exactly as a JWT's claims are.

use crate::outcome::{Denial, DenyKind};
use crate::rules::ProviderId;
use base64::Engine as _;
use lru::LruCache;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::rc::Rc;

/// A failed lookup is remembered this long, so the requests waiting for it are answered and a
/// burst does not call a failing endpoint once per request.
pub const FAILURE_MEMORY_MS: u64 = 1_000;
/// Largest introspection answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A credential that is never printed (`Debug` shows that it is set, not what it is).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    pub cluster: String,
    /// `:authority` of the call (from `uri`, else the cluster name).
    pub authority: String,
    pub path: String,
    /// HTTP Basic client authentication (RFC 7662 section 2.1). Without it the call carries no
    /// credentials: the cluster may add them (Envoy's credential_injector upstream filter
    /// reads them from a file or an SDS secret).
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub timeout_ms: u64,
    pub cache_ms: u64,
    pub negative_ms: u64,
    pub max_entries: usize,
    /// What a request gets when its token cannot be looked up (endpoint down, slow, garbage).
    pub unavailable: Denial,
    /// Tokens shaped like a JWT are not this provider's (it takes opaque tokens only).
    pub opaque_only: bool,
}

/// The 401 default for a token that could not be looked up.
pub const UNAVAILABLE_401: Denial = Denial::new(
    DenyKind::InvalidToken,
    "token introspection is temporarily unavailable",
    "introspection_unavailable",
);
/// The 503 form (`unavailable_status: 503`).
pub const UNAVAILABLE_503: Denial = Denial::new(
    DenyKind::Unavailable,
    "token introspection is temporarily unavailable",
    "introspection_unavailable",
);
pub const INACTIVE: Denial = Denial::new(DenyKind::InvalidToken, "token is not active", "inactive");

/// What the server said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Active(Rc<Map<String, Value>>),
    Inactive,
    /// No usable answer (error status, timeout, not JSON, no boolean `active`).
    Unavailable,
}

/// A lookup: an answer, or wait for the call in flight.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Known(Answer),
    Wait,
}

/// The call for `token`: request headers and the form body.
pub fn request(cfg: &IntrospectionConfig, token: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let mut headers = vec![
        (":method", "POST".to_string()),
        (":path", cfg.path.clone()),
        (":authority", cfg.authority.clone()),
        ("content-type", "application/x-www-form-urlencoded".into()),
        ("accept", "application/json".into()),
    ];
    if let (Some(id), Some(secret)) = (&cfg.client_id, &cfg.client_secret) {
        // RFC 6749 section 2.3.1: both form-urlencoded, then Basic.
        let pair = format!("{}:{}", form_encode(id), form_encode(&secret.0));
        let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
        headers.push(("authorization", format!("Basic {b64}")));
    }
    let body = format!("token={}&token_type_hint=access_token", form_encode(token));
    (headers, body.into_bytes())
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Reads the server's answer: 200 with a JSON object holding a boolean `active`.
pub fn parse_answer(status_ok: bool, body: Option<&[u8]>) -> Answer {
    let Some(body) = body.filter(|_| status_ok) else {
        return Answer::Unavailable;
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Answer::Unavailable;
    };
    match map.get("active") {
        Some(Value::Bool(true)) => Answer::Active(Rc::new(map)),
        Some(Value::Bool(false)) => Answer::Inactive,
        _ => Answer::Unavailable,
    }
}

/// Whether `token` is shaped like a JWT (three dot-separated base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[derive(Debug)]
struct Entry {
    answer: Answer,
    until_ms: u64,
}

type Cache = LruCache<Box<str>, Entry, foldhash::fast::FixedState>;

/// One worker's introspection state: per provider a bounded LRU of answers, and the calls in
/// flight (one per token).
pub struct Introspections {
    caches: Vec<Option<Cache>>,
    waiting: HashSet<(ProviderId, Box<str>)>,
    calls: HashMap<u32, (ProviderId, Box<str>)>,
}

impl std::fmt::Debug for Introspections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspections")
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

impl Introspections {
    /// `configs[p]`: provider `p`'s introspection, if it is of that kind. `seed` keys the
    /// caches' hasher (random per VM).
    pub fn new(configs: &[Option<&IntrospectionConfig>], seed: u64) -> Self {
        let caches = configs
            .iter()
            .map(|c| {
                c.map(|c| {
                    let cap = NonZeroUsize::new(c.max_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
                    LruCache::with_hasher(cap, foldhash::fast::FixedState::with_seed(seed))
                })
            })
            .collect();
        Self {
            caches,
            waiting: HashSet::new(),
            calls: HashMap::new(),
        }
    }

    /// The cached answer, `Wait` when a call for this token is in flight, `None` when a call
    /// must be made.
    pub fn lookup(&mut self, p: ProviderId, token: &str, now_ms: u64) -> Option<Lookup> {
        let cache = self.caches.get_mut(p)?.as_mut()?;
        match cache.get(token) {
            Some(e) if now_ms < e.until_ms => return Some(Lookup::Known(e.answer.clone())),
            Some(_) => {
                cache.pop(token);
            }
            None => {}
        }
        let key = (p, Box::<str>::from(token));
        self.waiting.contains(&key).then_some(Lookup::Wait)
    }

    /// A call for `token` went out as `call`.
    pub fn started(&mut self, call: u32, p: ProviderId, token: &str) {
        let key: Box<str> = token.into();
        self.waiting.insert((p, key.clone()));
        self.calls.insert(call, (p, key));
    }

    /// Whether `call` is an introspection call (its answer is for [`Self::answered`]).
    pub fn take_call(&mut self, call: u32) -> Option<(ProviderId, Box<str>)> {
        let found = self.calls.remove(&call)?;
        self.waiting.remove(&found);
        Some(found)
    }

    /// Stores the answer for as long as `cfg` allows.
    pub fn answered(
        &mut self,
        (p, token): (ProviderId, Box<str>),
        answer: Answer,
        cfg: &IntrospectionConfig,
        now_ms: u64,
    ) {
        let until_ms = match &answer {
            Answer::Active(claims) => {
                let by_policy = now_ms.saturating_add(cfg.cache_ms);
                match claims.get("exp").and_then(Value::as_f64) {
                    Some(exp) if exp > 0.0 => by_policy.min((exp * 1000.0) as u64),
                    _ => by_policy,
                }
            }
            Answer::Inactive => now_ms.saturating_add(cfg.negative_ms),
            Answer::Unavailable => now_ms.saturating_add(FAILURE_MEMORY_MS),
        };
        // An answer already out of date (an active token past its `exp`) is still kept a
        // moment, so the requests waiting for it are decided by it, not sent to ask again.
        let until_ms = until_ms.max(now_ms.saturating_add(FAILURE_MEMORY_MS.min(cfg.cache_ms)));
        if let Some(Some(cache)) = self.caches.get_mut(p) {
            cache.put(token, Entry { answer, until_ms });
        }
    }

    /// Calls in flight (for tests and the paused-request deadline).
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> IntrospectionConfig {
        IntrospectionConfig {
            cluster: "idp".into(),
            authority: "idp.example".into(),
            path: "/introspect".into(),
            client_id: Some("gate way".into()),
            client_secret: Some(Secret("s3cr:t".into())),
            timeout_ms: 1000,
            cache_ms: 60_000,
            negative_ms: 5_000,
            max_entries: 2,
            unavailable: UNAVAILABLE_401,
            opaque_only: false,
        }
    }

    #[test]
    fn the_call_is_a_form_post_with_basic_credentials() {
        let (headers, body) = request(&cfg(), "abc+/=");
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(":method"), Some("POST"));
        assert_eq!(get(":path"), Some("/introspect"));
        let b64 = base64::engine::general_purpose::STANDARD.encode("gate+way:s3cr%3At");
        assert_eq!(get("authorization"), Some(format!("Basic {b64}").as_str()));
        assert_eq!(body, b"token=abc%2B%2F%3D&token_type_hint=access_token");
        assert!(
            !format!("{:?}", cfg()).contains("s3cr"),
            "the secret is never printed"
        );
    }

    #[test]
    fn answers() {
        let active = parse_answer(true, Some(br#"{"active":true,"sub":"u"}"#));
        assert!(matches!(active, Answer::Active(m) if m["sub"] == "u"));
        assert_eq!(
            parse_answer(true, Some(br#"{"active":false}"#)),
            Answer::Inactive
        );
        for bad in [&br#"{"active":"true"}"#[..], b"{}", b"[]", b"<html>"] {
            assert_eq!(parse_answer(true, Some(bad)), Answer::Unavailable);
        }
        assert_eq!(
            parse_answer(false, Some(br#"{"active":true}"#)),
            Answer::Unavailable
        );
        assert_eq!(parse_answer(true, None), Answer::Unavailable);
    }

    #[test]
    fn cache_lifetimes_and_coalescing() {
        let c = cfg();
        let mut i = Introspections::new(&[Some(&c)], 1);
        assert_eq!(i.lookup(0, "t1", 0), None);
        i.started(7, 0, "t1");
        assert_eq!(i.lookup(0, "t1", 0), Some(Lookup::Wait));
        let call = i.take_call(7).unwrap();
        assert_eq!(i.take_call(7), None);
        let claims = json!({"active": true, "exp": 30})
            .as_object()
            .unwrap()
            .clone();
        i.answered(call, Answer::Active(Rc::new(claims)), &c, 0);
        // Active until min(exp, cache_duration): exp 30 s.
        assert!(matches!(
            i.lookup(0, "t1", 29_999),
            Some(Lookup::Known(Answer::Active(_)))
        ));
        assert_eq!(i.lookup(0, "t1", 30_000), None);
        i.answered((0, "t2".into()), Answer::Inactive, &c, 0);
        assert_eq!(
            i.lookup(0, "t2", 4_999),
            Some(Lookup::Known(Answer::Inactive))
        );
        assert_eq!(i.lookup(0, "t2", 5_000), None);
        i.answered((0, "t3".into()), Answer::Unavailable, &c, 0);
        assert_eq!(i.lookup(0, "t3", FAILURE_MEMORY_MS), None);
        // A token is compared in full: a prefix or an extension is another token.
        i.answered((0, "tok".into()), Answer::Inactive, &c, 0);
        assert_eq!(i.lookup(0, "to", 1), None);
        assert_eq!(i.lookup(0, "toke", 1), None);
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJz."));
        assert!(!looks_like_jwt("2YotnFZFEjr1zCsicMWpAA"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c=d"));
    }
}
