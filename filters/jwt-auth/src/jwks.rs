//! JWKS documents parsed into keys ready to verify with: unsupported or unsafe keys are skipped
//! (and reported, by index and `kid`, never with key material), a document left with no usable
//! key is refused.
//!
//! RSA keys are held to what keeps one verification cheap: a public exponent of 3 or 65537
//! (17 bits at most, so a forged signature costs at most 17 modular squarings) and a modulus of
//! 2048 bits up to the provider's [`KeyPolicy::max_rsa_bits`] (4096 unless configured, 8192 at
//! most).

use crate::token::Algorithm;
use crate::verify::rsa::{RsaPublicKey, DEFAULT_MAX_BITS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

/// Most keys a JWKS may hold; more is a misconfiguration or an attack on verification cost.
pub const MAX_KEYS: usize = 64;
/// Smallest HMAC secret accepted (RFC 7518 §3.2: at least the hash size; HS256 is the floor).
pub const MIN_HMAC_SECRET: usize = 32;

/// Limits on the keys a provider accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Largest RSA modulus, in bits (`max_rsa_key_bits`).
    pub max_rsa_bits: u32,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            max_rsa_bits: DEFAULT_MAX_BITS,
        }
    }
}

/// A P-521 public key (the `p521` crate's key has no `Debug`).
#[derive(Clone)]
pub struct P521Key(pub p521::ecdsa::VerifyingKey);

impl std::fmt::Debug for P521Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P521Key")
    }
}

/// The key material of one JWK, in the form its verifier needs.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(P521Key),
    Ed25519(ed25519_compact::PublicKey),
    /// A shared secret; only ever from the provider's own configuration (`local_jwks`).
    Hmac(Vec<u8>),
}

impl KeyMaterial {
    /// The algorithms this kind of key can verify. The kind of key decides the family, so a
    /// public key can never be used as an HMAC secret (no `alg` confusion).
    pub fn supports(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (
                KeyMaterial::Rsa(_),
                RS256 | RS384 | RS512 | PS256 | PS384 | PS512
            ) | (KeyMaterial::P256(_), ES256)
                | (KeyMaterial::P384(_), ES384)
                | (KeyMaterial::P521(_), ES512)
                | (KeyMaterial::Ed25519(_), EdDSA)
                | (KeyMaterial::Hmac(_), HS256 | HS384 | HS512)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`; when present, only that algorithm may use the key.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
}

/// The usable keys of one provider.
#[derive(Debug, Clone)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    /// Why keys were skipped (`keys[2] (kid "k1"): RSA exponent must be 3 or 65537`), for the
    /// operator's log and the `jwks.keys_skipped` counter. Never holds key material.
    pub skipped: Vec<String>,
}

/// Where a JWKS comes from: symmetric keys are accepted only from the configuration itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksOrigin {
    Local,
    Remote,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not a JSON object with a \"keys\" array")]
    NotJwks,
    #[error("JWKS has more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("JWKS has no usable key ({0})")]
    NoUsableKeys(String),
}

/// At most this much of a `kid` is quoted in a skip reason.
const MAX_KID_IN_LOG: usize = 64;

/// `keys[i]` plus the key's `kid` (escaped, shortened) when it has a string one.
fn key_label(i: usize, key: &Value) -> String {
    match key.get("kid").and_then(Value::as_str) {
        Some(kid) => {
            let short: String = kid.chars().take(MAX_KID_IN_LOG).collect();
            let more = if short.len() < kid.len() { "..." } else { "" };
            format!("keys[{i}] (kid {short:?}{more})")
        }
        None => format!("keys[{i}]"),
    }
}

impl KeySet {
    /// With the default [`KeyPolicy`].
    pub fn parse(json: &[u8], origin: JwksOrigin) -> Result<Self, JwksError> {
        Self::parse_with(json, origin, &KeyPolicy::default())
    }

    pub fn parse_with(
        json: &[u8],
        origin: JwksOrigin,
        policy: &KeyPolicy,
    ) -> Result<Self, JwksError> {
        let doc: Value = serde_json::from_slice(json).map_err(|_| JwksError::NotJwks)?;
        Self::from_value_with(&doc, origin, policy)
    }

    /// With the default [`KeyPolicy`].
    pub fn from_value(doc: &Value, origin: JwksOrigin) -> Result<Self, JwksError> {
        Self::from_value_with(doc, origin, &KeyPolicy::default())
    }

    pub fn from_value_with(
        doc: &Value,
        origin: JwksOrigin,
        policy: &KeyPolicy,
    ) -> Result<Self, JwksError> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotJwks)?;
        if keys.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut set = KeySet {
            keys: Vec::new(),
            skipped: Vec::new(),
        };
        for (i, key) in keys.iter().enumerate() {
            match key
                .as_object()
                .ok_or("not an object")
                .and_then(|k| parse_jwk(k, origin, policy))
            {
                Ok(jwk) => set.keys.push(jwk),
                Err(why) => set.skipped.push(format!("{}: {why}", key_label(i, key))),
            }
        }
        if set.keys.is_empty() {
            let why = if set.skipped.is_empty() {
                "empty".to_string()
            } else {
                set.skipped.join("; ")
            };
            return Err(JwksError::NoUsableKeys(why));
        }
        Ok(set)
    }
}

fn parse_jwk(
    k: &Map<String, Value>,
    origin: JwksOrigin,
    policy: &KeyPolicy,
) -> Result<Jwk, &'static str> {
    let kid = match k.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("kid is not a string"),
    };
    if let Some(u) = k.get("use") {
        if u.as_str() != Some("sig") {
            return Err("use is not \"sig\"");
        }
    }
    if let Some(ops) = k.get("key_ops") {
        let ok = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !ok {
            return Err("key_ops does not allow verify");
        }
    }
    let alg = match k.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(Algorithm::parse(a).map_err(|_| "unsupported alg")?),
        Some(_) => return Err("alg is not a string"),
    };
    let material = match str_field(k, "kty")? {
        "RSA" => {
            let n = b64_field(k, "n")?;
            let e = b64_field(k, "e")?;
            KeyMaterial::Rsa(RsaPublicKey::with_max_bits(&n, &e, policy.max_rsa_bits)?)
        }
        "EC" => {
            let x = b64_field(k, "x")?;
            let y = b64_field(k, "y")?;
            match str_field(k, "crv")? {
                "P-256" => KeyMaterial::P256(p256_key(&x, &y)?),
                "P-384" => KeyMaterial::P384(p384_key(&x, &y)?),
                "P-521" => KeyMaterial::P521(P521Key(p521_key(&x, &y)?)),
                _ => return Err("unsupported EC curve"),
            }
        }
        "OKP" => match str_field(k, "crv")? {
            "Ed25519" => {
                let x = b64_field(k, "x")?;
                KeyMaterial::Ed25519(
                    ed25519_compact::PublicKey::from_slice(&x).map_err(|_| "bad Ed25519 key")?,
                )
            }
            _ => return Err("unsupported OKP curve"),
        },
        "oct" => {
            if origin != JwksOrigin::Local {
                return Err("symmetric keys are accepted only from local_jwks");
            }
            let secret = b64_field(k, "k")?;
            if secret.len() < MIN_HMAC_SECRET {
                return Err("HMAC secret shorter than 32 bytes");
            }
            KeyMaterial::Hmac(secret)
        }
        _ => return Err("unsupported kty"),
    };
    if let Some(a) = alg {
        if !material.supports(a) {
            return Err("alg does not fit kty/crv");
        }
    }
    Ok(Jwk { kid, alg, material })
}

/// An EC coordinate as the curve's `N` bytes. RFC 7518 asks for the full length; a shorter
/// one (a leading zero dropped, as some issuers write them and jwt_verify_lib accepts) is
/// left-padded. The point is checked to be on the curve either way.
fn coordinate<const N: usize>(c: &[u8]) -> Result<[u8; N], &'static str> {
    let mut out = [0u8; N];
    let start = N
        .checked_sub(c.len())
        .ok_or("EC coordinate has the wrong length")?;
    if c.is_empty() {
        return Err("EC coordinate has the wrong length");
    }
    out[start..].copy_from_slice(c);
    Ok(out)
}

fn p256_key(x: &[u8], y: &[u8]) -> Result<p256::ecdsa::VerifyingKey, &'static str> {
    let (x, y) = (coordinate::<32>(x)?, coordinate::<32>(y)?);
    let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| "EC point not on curve")
}

/// A P-521 public key from its coordinates (66 bytes each), as an uncompressed SEC1 point.
fn p521_key(x: &[u8], y: &[u8]) -> Result<p521::ecdsa::VerifyingKey, &'static str> {
    let (x, y) = (coordinate::<66>(x)?, coordinate::<66>(y)?);
    let mut sec1 = Vec::with_capacity(133);
    sec1.push(4);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| "EC point not on curve")
}

fn p384_key(x: &[u8], y: &[u8]) -> Result<p384::ecdsa::VerifyingKey, &'static str> {
    let (x, y) = (coordinate::<48>(x)?, coordinate::<48>(y)?);
    let point = p384::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    p384::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| "EC point not on curve")
}

fn str_field<'a>(k: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, &'static str> {
    k.get(name).and_then(Value::as_str).ok_or(match name {
        "kty" => "missing kty",
        "crv" => "missing crv",
        _ => "missing field",
    })
}

fn b64_field(k: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, &'static str> {
    let s = k.get(name).and_then(Value::as_str).ok_or(match name {
        "n" => "missing n",
        "e" => "missing e",
        "x" => "missing x",
        "y" => "missing y",
        "k" => "missing k",
        _ => "missing field",
    })?;
    // Some issuers pad their JWK members; accept that here (keys are configuration, not
    // attacker input), but nothing outside the base64url alphabet.
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| "member is not base64url")
}
