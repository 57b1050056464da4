//! Signature verification: choosing the key (`kid`, then key type and the JWK's `alg`) and
//! checking the signature with the algorithm the key's type allows.
//!
//! The work per token is bounded: at most [`MAX_CANDIDATES`] signature checks, whatever the key
//! set holds. A token with a `kid` is checked against the key(s) of that `kid`; a token without
//! one against the first [`MAX_CANDIDATES`] keys (in JWKS order) whose type and `alg` fit its
//! `alg`, and when more keys fit and none of those verified, it is refused as
//! [`VerifyError::KidRequired`] rather than tried further.

pub mod rsa;

use crate::jwks::{Jwk, KeyMaterial, KeySet};
use crate::token::{Algorithm, JoseHeader};
use hmac::{Hmac, Mac};
use rsa::Hash;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token names a `kid` the key set does not have (a refetch may find it).
    #[error("unknown kid")]
    UnknownKid,
    /// No key fits the token's `alg` (wrong type, or the JWK pins another `alg`).
    #[error("no key matches the token's alg")]
    NoMatchingKey,
    #[error("signature does not verify")]
    BadSignature,
    /// No `kid`, more than [`MAX_CANDIDATES`] fitting keys, and none of the first ones verified.
    #[error("token has no kid and the key set has too many fitting keys")]
    KidRequired,
}

/// Most signature checks spent on one token.
pub const MAX_CANDIDATES: usize = 2;

/// The keys that may verify a token: those with its `kid` (if it has one), of a type that
/// supports its `alg`, and whose own `alg`, if any, is the token's.
pub fn candidates<'a>(set: &'a KeySet, header: &JoseHeader) -> Result<Vec<&'a Jwk>, VerifyError> {
    let by_kid: Vec<&Jwk> = match &header.kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
            .collect(),
        None => set.keys.iter().collect(),
    };
    if by_kid.is_empty() {
        return Err(if header.kid.is_some() {
            VerifyError::UnknownKid
        } else {
            VerifyError::NoMatchingKey
        });
    }
    let fit: Vec<&Jwk> = by_kid
        .into_iter()
        .filter(|k| k.material.supports(header.alg) && k.alg.is_none_or(|a| a == header.alg))
        .collect();
    if fit.is_empty() {
        return Err(VerifyError::NoMatchingKey);
    }
    Ok(fit)
}

/// Verifies `signature` over `signing_input` with the first candidate key that accepts it.
pub fn verify(
    set: &KeySet,
    header: &JoseHeader,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    verify_counted(set, header, signing_input, signature, &mut 0)
}

/// [`verify`], adding the number of signature checks it made to `checks` (at most
/// [`MAX_CANDIDATES`]): the `jwt_auth.signature_checks` counter and the tests count them.
pub fn verify_counted(
    set: &KeySet,
    header: &JoseHeader,
    signing_input: &[u8],
    signature: &[u8],
    checks: &mut u32,
) -> Result<(), VerifyError> {
    let all = candidates(set, header)?;
    for key in all.iter().take(MAX_CANDIDATES) {
        *checks += 1;
        if verify_with(&key.material, header.alg, signing_input, signature) {
            return Ok(());
        }
    }
    if header.kid.is_none() && all.len() > MAX_CANDIDATES {
        return Err(VerifyError::KidRequired);
    }
    Err(VerifyError::BadSignature)
}

/// One key, one algorithm. A (key type, alg) pair outside [`KeyMaterial::supports`] is false.
pub fn verify_with(key: &KeyMaterial, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
    use Algorithm::*;
    match (key, alg) {
        (KeyMaterial::Rsa(k), RS256) => k.verify_pkcs1v15(Hash::Sha256, msg, sig),
        (KeyMaterial::Rsa(k), RS384) => k.verify_pkcs1v15(Hash::Sha384, msg, sig),
        (KeyMaterial::Rsa(k), RS512) => k.verify_pkcs1v15(Hash::Sha512, msg, sig),
        (KeyMaterial::Rsa(k), PS256) => k.verify_pss(Hash::Sha256, msg, sig),
        (KeyMaterial::Rsa(k), PS384) => k.verify_pss(Hash::Sha384, msg, sig),
        (KeyMaterial::Rsa(k), PS512) => k.verify_pss(Hash::Sha512, msg, sig),
        (KeyMaterial::P256(k), ES256) => {
            use p256::ecdsa::signature::Verifier;
            p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
        }
        (KeyMaterial::P384(k), ES384) => {
            use p384::ecdsa::signature::Verifier;
            p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
        }
        (KeyMaterial::Ed25519(k), EdDSA) => {
            ed25519_compact::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
        }
        (KeyMaterial::Hmac(secret), HS256) => hmac_ok(Hash::Sha256, secret, msg, sig),
        (KeyMaterial::Hmac(secret), HS384) => hmac_ok(Hash::Sha384, secret, msg, sig),
        (KeyMaterial::Hmac(secret), HS512) => hmac_ok(Hash::Sha512, secret, msg, sig),
        _ => false,
    }
}

fn hmac_ok(hash: Hash, secret: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    // RFC 7518 §3.2: the secret must be at least as long as the hash output.
    if secret.len() < hash.output_len() {
        return false;
    }
    // `verify_slice` compares in constant time and requires the exact length.
    macro_rules! check {
        ($digest:ty) => {
            match <Hmac<$digest> as Mac>::new_from_slice(secret) {
                Ok(mut mac) => {
                    mac.update(msg);
                    mac.verify_slice(sig).is_ok()
                }
                Err(_) => false,
            }
        };
    }
    match hash {
        Hash::Sha256 => check!(sha2::Sha256),
        Hash::Sha384 => check!(sha2::Sha384),
        Hash::Sha512 => check!(sha2::Sha512),
    }
}
