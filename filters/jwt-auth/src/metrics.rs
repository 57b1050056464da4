//! The metrics jwt_auth defines, named in the scheme every filter of this project uses:
//! `<filter>.<name>` (Envoy shows them as `wasmcustom.<filter>.<name>`).

/// Requests allowed.
pub const ALLOWED: &str = "jwt_auth.allowed";
/// Requests refused, by reason (`missing`, `bad_signature`, `expired`, `unknown_kid`, ...:
/// [`crate::outcome::Denial`]'s reasons).
pub fn denied(reason: &str) -> String {
    format!("jwt_auth.denied.{reason}")
}
/// JWKS documents fetched and accepted.
pub const JWKS_FETCH_SUCCESS: &str = "jwt_auth.jwks_fetch.success";
/// JWKS fetches that failed or were refused (the last good keys are kept).
pub const JWKS_FETCH_FAILURE: &str = "jwt_auth.jwks_fetch.failure";
/// Keys a JWKS document had that were refused (bad exponent, oversized modulus, ...).
pub const JWKS_KEYS_SKIPPED: &str = "jwt_auth.jwks.keys_skipped";
/// Introspection calls answered (active or not).
pub const INTROSPECTION_SUCCESS: &str = "jwt_auth.introspection.success";
/// Introspection calls that failed (error status, timeout, unusable answer).
pub const INTROSPECTION_FAILURE: &str = "jwt_auth.introspection.failure";
/// Tokens found in the verified-token cache.
pub const TOKEN_CACHE_HIT: &str = "jwt_auth.token_cache.hit";
/// Tokens verified because the cache did not have them.
pub const TOKEN_CACHE_MISS: &str = "jwt_auth.token_cache.miss";
/// Signature checks made (at most two per token).
pub const SIGNATURE_CHECKS: &str = "jwt_auth.signature_checks";
/// Revocation list syncs that succeeded.
pub const REVOCATION_SYNC_SUCCESS: &str = "jwt_auth.revocation.sync.success";
/// Revocation list syncs that failed (the last list is kept).
pub const REVOCATION_SYNC_FAILURE: &str = "jwt_auth.revocation.sync.failure";
/// Gauge: the age of the revocation list this worker holds, in milliseconds.
pub const REVOCATION_LIST_AGE_MS: &str = "jwt_auth.revocation.list_age_ms";
/// Gauge: the entries of the revocation list.
pub const REVOCATION_ENTRIES: &str = "jwt_auth.revocation.entries";
