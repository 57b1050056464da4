//! Issuers of their own, revocations, and this issuer's entries of a list.

use crate::prelude::*;
use ratelimit_service::revocation::{RevocationList, RevokeRequest, Revoked};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An issuer nobody else uses, so scenarios sharing one store never meet.
pub fn unique_issuer(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("https://idp.test/{name}/{}/{nanos}", std::process::id())
}

pub fn request(issuer: &str, jti: &str, expires_at: u64) -> RevokeRequest {
    RevokeRequest {
        issuer: issuer.into(),
        jti: jti.into(),
        expires_at,
    }
}

pub async fn revoke<S: RevocationStore>(
    store: &S,
    issuer: &str,
    jti: &str,
    expires_at: u64,
) -> Revoked {
    store
        .revoke(&request(issuer, jti, expires_at))
        .await
        .unwrap()
}

/// This issuer's entries of a list: (jti, expires_at), in list order.
pub fn mine(list: &RevocationList, issuer: &str) -> Vec<(String, u64)> {
    list.revocations
        .iter()
        .filter(|r| r.issuer == issuer)
        .map(|r| (r.jti.clone(), r.expires_at))
        .collect()
}

pub fn entry(jti: &str, expires_at: u64) -> (String, u64) {
    (jti.to_owned(), expires_at)
}
