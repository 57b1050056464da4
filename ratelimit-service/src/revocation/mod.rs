//! Token revocation (`edgegate.revocation.v1.RevocationService`): revoke a token id (`jti`) of
//! one issuer until a time, and list the revocations added since a version, so the jwt_auth
//! filter can keep a local copy and check each request without a network hop.
//!
//! The store is versioned: every change (a new entry, or a later expiry for an existing one)
//! takes a new version, greater than every version before it, and the entry is listed under
//! that version. Versions are seeded from the store's clock in microseconds
//! (`max(previous + 1, now_us)`), so a store that loses its data (a Redis restart without
//! persistence, `FLUSHALL`, a service restart with `--store memory`) does not hand out again a
//! version a caller has already seen (barring a store clock that goes back): a caller ahead of
//! the store gets the full list, and a caller behind it gets every entry added since the reset.
//! A plain counter could restart below a caller's version, then pass it, and the entries in
//! between would never reach that caller.
//!
//! Entries expire at `expires_at` (normally the token's `exp`, after which the token is
//! rejected as expired anyway): they are never listed again and are pruned on writes.
//!
//! Two stores follow the same semantics: [`memory::MemoryRevocations`] (one instance, tests)
//! and [`redis::RedisRevocations`] (two Lua scripts; keys in [`crate::keys`]).

pub mod memory;
pub mod redis;

use crate::storage::StoreError;
use serde::Serialize;
use std::future::Future;

/// Longest issuer or jti accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;

/// Furthest `expires_at` accepted, from now: ten years. Longer than any sane token lifetime,
/// and it catches milliseconds passed where seconds are expected.
pub const MAX_LIFETIME_SECS: u64 = 3650 * 86_400;

/// Default bound on live entries (`--revocation-max-entries`).
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    pub issuer: String,
    pub jti: String,
    /// Unix seconds; the entry is live while `now < expires_at`.
    pub expires_at: u64,
    /// The store version at which this entry was added (or its expiry last extended).
    pub version: u64,
}

/// A request to revoke `jti` of `issuer` until `expires_at` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    pub issuer: String,
    pub jti: String,
    pub expires_at: u64,
}

impl RevokeRequest {
    /// Checks the request against the bounds above; `now` is Unix seconds.
    pub fn validate(&self, now: u64) -> Result<(), RevocationError> {
        let invalid = |message: String| Err(RevocationError::Invalid(message));
        for (name, value) in [("issuer", &self.issuer), ("jti", &self.jti)] {
            if value.is_empty() {
                return invalid(format!("revocation {name} must not be empty"));
            }
            if value.len() > MAX_FIELD_BYTES {
                return invalid(format!(
                    "revocation {name} is {} bytes, over the maximum of {MAX_FIELD_BYTES}",
                    value.len()
                ));
            }
        }
        if self.expires_at <= now {
            return invalid(format!(
                "revocation expires_at {} is not in the future (now {now}, Unix seconds)",
                self.expires_at
            ));
        }
        if self.expires_at - now > MAX_LIFETIME_SECS {
            return invalid(format!(
                "revocation expires_at {} is more than 10 years ahead (now {now}); \
                 expires_at is Unix seconds, not milliseconds",
                self.expires_at
            ));
        }
        Ok(())
    }
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// The store version after the call.
    pub version: u64,
    /// False when the token was already revoked until at least `expires_at` (the version did
    /// not move).
    pub changed: bool,
    /// Live entries after the call.
    pub live: u64,
}

/// The answer to "what changed since version N".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    /// Live entries in version order.
    pub revocations: Vec<Revocation>,
    /// The store version: the caller passes it as `since_version` next time.
    pub version: u64,
    /// True when `revocations` is every live entry (the caller replaces its set).
    pub full: bool,
    /// Live entries in the store (for the gauge; equals `revocations.len()` when `full`).
    pub live: u64,
}

/// Whether a `since_version` gets the full list: 0 means "I have nothing", and a version
/// ahead of the store means the store was reset since the caller last looked.
pub fn wants_full_list(since_version: u64, current_version: u64) -> bool {
    since_version == 0 || since_version > current_version
}

/// A revocation that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// Bad input: the message says which field and why.
    #[error("{0}")]
    Invalid(String),
    /// The store holds its maximum of live entries; nothing was added.
    #[error(
        "revocation store is full: {max} live entries (--revocation-max-entries); \
         entries leave as they expire, or raise the limit"
    )]
    Full { max: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where revocations live. Both operations are atomic: a list never shows version V without
/// every entry up to V.
pub trait RevocationStore: Send + Sync + 'static {
    fn revoke(
        &self,
        request: &RevokeRequest,
    ) -> impl Future<Output = Result<Revoked, RevocationError>> + Send;

    fn list(
        &self,
        since_version: u64,
    ) -> impl Future<Output = Result<RevocationList, RevocationError>> + Send;
}

/// The revocation store chosen at startup (it follows `--store`).
pub enum AnyRevocationStore {
    Memory(memory::MemoryRevocations),
    Redis(redis::RedisRevocations),
}

impl RevocationStore for AnyRevocationStore {
    async fn revoke(&self, request: &RevokeRequest) -> Result<Revoked, RevocationError> {
        match self {
            AnyRevocationStore::Memory(store) => store.revoke(request).await,
            AnyRevocationStore::Redis(store) => store.revoke(request).await,
        }
    }

    async fn list(&self, since_version: u64) -> Result<RevocationList, RevocationError> {
        match self {
            AnyRevocationStore::Memory(store) => store.list(since_version).await,
            AnyRevocationStore::Redis(store) => store.list(since_version).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(issuer: &str, jti: &str, expires_at: u64) -> RevokeRequest {
        RevokeRequest {
            issuer: issuer.into(),
            jti: jti.into(),
            expires_at,
        }
    }

    fn message(result: Result<(), RevocationError>) -> String {
        match result {
            Err(RevocationError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field_and_the_bound() {
        let now = 1_700_000_000;
        assert!(request("iss", "j", now + 1).validate(now).is_ok());
        assert!(request("iss", "j", now + MAX_LIFETIME_SECS)
            .validate(now)
            .is_ok());
        assert_eq!(
            message(request("", "j", now + 1).validate(now)),
            "revocation issuer must not be empty"
        );
        assert_eq!(
            message(request("iss", "", now + 1).validate(now)),
            "revocation jti must not be empty"
        );
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(
            message(request("iss", &long, now + 1).validate(now)),
            "revocation jti is 1025 bytes, over the maximum of 1024"
        );
        assert!(request(&long[1..], "j", now + 1).validate(now).is_ok());
        assert_eq!(
            message(request("iss", "j", now).validate(now)),
            "revocation expires_at 1700000000 is not in the future (now 1700000000, Unix seconds)"
        );
        assert!(message(request("iss", "j", 0).validate(now)).contains("not in the future"));
        let millis = message(request("iss", "j", now * 1000).validate(now));
        assert!(millis.contains("not milliseconds"), "{millis}");
        assert!(message(request("iss", "j", u64::MAX).validate(now)).contains("10 years"));
    }

    #[test]
    fn full_list_for_new_callers_and_callers_ahead_of_the_store() {
        assert!(wants_full_list(0, 0));
        assert!(wants_full_list(0, 10));
        assert!(wants_full_list(11, 10));
        assert!(!wants_full_list(10, 10));
        assert!(!wants_full_list(3, 10));
    }
}
