//! The per-VM verified-token cache: a bounded LRU per provider from the full token text to its
//! verified claims, so a repeated token skips signature verification.
//!
//! The map hashes with a randomly seeded foldhash only to pick a bucket; a hit needs the stored
//! token to equal the presented one byte for byte, so a hash collision can never hand one
//! caller another caller's claims. An entry lives until the token's `exp` (or the configured
//! TTL for tokens without one), never longer; time is passed in.

use lru::LruCache;
use serde_json::{Map, Value};
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::rc::Rc;

/// What verification established about a token, shared by the cache and the request.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub claims: Map<String, Value>,
    /// The base64url payload segment, for `forward_payload_header`.
    pub payload_b64: String,
    /// `exp` in Unix seconds, when the token has one.
    pub exp: Option<i64>,
    /// The identity headers and their vetted values ([`crate::identity`]).
    pub identity: Vec<(String, String)>,
}

#[derive(Debug)]
struct Entry {
    token: Rc<VerifiedToken>,
    expires_at: i64,
}

pub struct TokenCache<S: BuildHasher = foldhash::fast::FixedState> {
    per_provider: Vec<LruCache<Box<str>, Entry, S>>,
    max_ttl_secs: i64,
}

impl<S: BuildHasher> std::fmt::Debug for TokenCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("providers", &self.per_provider.len())
            .finish()
    }
}

impl TokenCache {
    /// `seed` must be random per VM (the glue reads it from WASI `random_get`).
    pub fn new(providers: usize, capacity: usize, max_ttl_secs: u64, seed: u64) -> Self {
        Self::with_hasher(providers, capacity, max_ttl_secs, || {
            foldhash::fast::FixedState::with_seed(seed)
        })
    }
}

impl<S: BuildHasher> TokenCache<S> {
    pub fn with_hasher(
        providers: usize,
        capacity: usize,
        max_ttl_secs: u64,
        hasher: impl Fn() -> S,
    ) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            per_provider: (0..providers)
                .map(|_| LruCache::with_hasher(cap, hasher()))
                .collect(),
            max_ttl_secs: i64::try_from(max_ttl_secs).unwrap_or(i64::MAX),
        }
    }

    /// The cached verification of exactly this token for this provider, if still live.
    pub fn get(
        &mut self,
        provider: usize,
        token: &str,
        now_secs: i64,
    ) -> Option<Rc<VerifiedToken>> {
        let lru = self.per_provider.get_mut(provider)?;
        // `LruCache::get` hashes `token` to find the bucket, then compares keys with `==` on
        // the whole string.
        match lru.get(token) {
            Some(e) if now_secs < e.expires_at => Some(Rc::clone(&e.token)),
            Some(_) => {
                lru.pop(token);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token until `min(exp, now + max_ttl)`. Already-expired tokens
    /// (accepted within clock skew) are not cached.
    pub fn insert(
        &mut self,
        provider: usize,
        token: &str,
        verified: Rc<VerifiedToken>,
        now_secs: i64,
    ) {
        let ttl_end = now_secs.saturating_add(self.max_ttl_secs);
        let expires_at = verified.exp.map_or(ttl_end, |exp| exp.min(ttl_end));
        if expires_at <= now_secs {
            return;
        }
        if let Some(lru) = self.per_provider.get_mut(provider) {
            lru.put(
                token.into(),
                Entry {
                    token: verified,
                    expires_at,
                },
            );
        }
    }

    /// Forgets a provider's tokens (its keys changed: a removed key must stop vouching).
    pub fn clear_provider(&mut self, provider: usize) {
        if let Some(lru) = self.per_provider.get_mut(provider) {
            lru.clear();
        }
    }

    pub fn len(&self, provider: usize) -> usize {
        self.per_provider.get(provider).map_or(0, LruCache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasherDefault, Hasher};

    fn verified(sub: &str, exp: Option<i64>) -> Rc<VerifiedToken> {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(sub.into()));
        Rc::new(VerifiedToken {
            claims,
            payload_b64: String::new(),
            exp,
            identity: Vec::new(),
        })
    }

    /// Every key hashes to the same value: the worst collision an attacker could craft.
    #[derive(Default)]
    struct Colliding;
    impl Hasher for Colliding {
        fn finish(&self) -> u64 {
            42
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn colliding_hashes_never_share_claims() {
        let mut cache =
            TokenCache::with_hasher(1, 16, 300, BuildHasherDefault::<Colliding>::default);
        cache.insert(0, "token-of-alice", verified("alice", Some(1_000)), 0);
        assert_eq!(cache.get(0, "token-of-mallory", 1), None);
        assert_eq!(
            cache.get(0, "token-of-alic", 1),
            None,
            "prefix is not equal"
        );
        assert_eq!(
            cache.get(0, "token-of-alice", 1).unwrap().claims["sub"],
            "alice"
        );
    }

    #[test]
    fn entries_never_outlive_exp_or_ttl() {
        let mut cache = TokenCache::new(2, 16, 300, 7);
        cache.insert(0, "a", verified("a", Some(100)), 50);
        assert!(cache.get(0, "a", 99).is_some());
        assert!(cache.get(0, "a", 100).is_none());
        assert_eq!(cache.len(0), 0, "expired entry is dropped");
        cache.insert(0, "b", verified("b", None), 0);
        assert!(cache.get(0, "b", 299).is_some());
        assert!(cache.get(0, "b", 300).is_none());
        cache.insert(0, "c", verified("c", Some(10)), 20);
        assert_eq!(cache.len(0), 0, "tokens already past exp are not cached");
        cache.insert(1, "d", verified("d", Some(1000)), 0);
        assert!(cache.get(0, "d", 1).is_none(), "per provider");
        cache.clear_provider(1);
        assert!(cache.get(1, "d", 1).is_none());
    }

    #[test]
    fn bounded_lru() {
        let mut cache = TokenCache::new(1, 2, 300, 1);
        cache.insert(0, "a", verified("a", None), 0);
        cache.insert(0, "b", verified("b", None), 0);
        assert!(cache.get(0, "a", 1).is_some());
        cache.insert(0, "c", verified("c", None), 0);
        assert_eq!(cache.len(0), 2);
        assert!(
            cache.get(0, "b", 1).is_none(),
            "least recently used is evicted"
        );
        assert!(cache.get(0, "a", 1).is_some() && cache.get(0, "c", 1).is_some());
    }
}
