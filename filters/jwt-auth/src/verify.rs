//! Signature verification: choosing the key (`kid`, then key type and the JWK's `alg`) and
//! checking the signature with the algorithm the key's type allows.
//!
//! The work per token is bounded: at most [`MAX_CANDIDATES`] signature checks, whatever the key
//! set holds. A token with a `kid` is checked against the key(s) of that `kid` and, when the
//! set has none, against the keys that have no `kid` (as jwt_verify_lib, which Envoy's
//! jwt_authn uses, does); a token without one against the first [`MAX_CANDIDATES`] keys whose
//! type and `alg` fit its `alg`, those without a `kid` first, then in JWKS order. When more keys fit than were tried and none
//! verified, it is refused as [`VerifyError::KidRequired`] rather than tried further.

mod monty;
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

/// Most signature checks spent on one token: enough for an issuer mid-rotation (the previous,
/// current and next key, none named by the token), few enough to bound a forgery's cost.
pub const MAX_CANDIDATES: usize = 3;

/// The keys that may verify a token: those with its `kid` (if it has one), of a type that
/// supports its `alg`, and whose own `alg`, if any, is the token's.
pub fn candidates<'a>(set: &'a KeySet, header: &JoseHeader) -> Result<Vec<&'a Jwk>, VerifyError> {
    let by_kid: Vec<&Jwk> = match &header.kid {
        Some(kid) => {
            let named = (set.keys.iter()).filter(|k| k.kid.as_deref() == Some(kid.as_str()));
            let named: Vec<&Jwk> = named.collect();
            if named.is_empty() {
                // No key of that kid: the keys that name none may still be it.
                set.keys.iter().filter(|k| k.kid.is_none()).collect()
            } else {
                named
            }
        }
        // Keys without a kid first: an issuer that leaves kid out of its tokens most likely
        // publishes its key without one, and the checks per token are few.
        None => {
            let mut all: Vec<&Jwk> = set.keys.iter().collect();
            all.sort_by_key(|k| k.kid.is_some());
            all
        }
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
    // Keys chosen by the token's own kid were all of them: more fitting keys than were tried
    // remain only when the choice was by type (no kid, or a kid the keys do not name).
    let named = header.kid.is_some() && all.iter().any(|k| k.kid == header.kid);
    if all.len() > MAX_CANDIDATES && !named {
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
        (KeyMaterial::P521(k), ES512) => {
            use p521::ecdsa::signature::Verifier;
            p521::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.0.verify(msg, &s).is_ok())
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
