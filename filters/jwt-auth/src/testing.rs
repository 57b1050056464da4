//! Test support: key generation, token signing and the attack corpus, shared by the unit tests
//! and (through the `test-support` feature) the real-Envoy tests in `tests/`. Keys are made at
//! test time (RSA by the `openssl` CLI, which also signs RS*/PS* tokens as an independent
//! implementation; EC and Ed25519 by their crates from random seeds). Nothing here is committed
//! key material. Failing loudly is what test support should do, hence the unwraps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::claims::ClaimError;
use crate::outcome::Denial;
use crate::token::TokenError;
use crate::verify::VerifyError;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub struct RsaTestKey {
    pub pem_path: PathBuf,
    pub private: rsa::RsaPrivateKey,
    pub public_pem: String,
}

pub struct TestKeys {
    pub rsa: RsaTestKey,
    pub rsa2: RsaTestKey,
    pub p256: p256::ecdsa::SigningKey,
    pub p384: p384::ecdsa::SigningKey,
    pub p521: p521::ecdsa::SigningKey,
    pub ed: ed25519_compact::KeyPair,
    pub hmac: Vec<u8>,
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).unwrap();
    b
}

fn rsa_key(tag: &str) -> RsaTestKey {
    rsa_key_with_exponent(tag, 65537)
}

/// A fresh 2048-bit RSA key with public exponent `e` (made by openssl, not cached).
pub fn rsa_key_with_exponent(tag: &str, e: u32) -> RsaTestKey {
    let path = std::env::temp_dir().join(format!("jwt-auth-test-{}-{tag}.pem", std::process::id()));
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-pkeyopt",
            &format!("rsa_keygen_pubexp:{e}"),
            "-out",
        ])
        .arg(&path)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    let pem = std::fs::read_to_string(&path).unwrap();
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    RsaTestKey {
        pem_path: path,
        private,
        public_pem,
    }
}

pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        rsa: rsa_key("a"),
        rsa2: rsa_key("b"),
        p256: loop {
            if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&random::<32>()) {
                break k;
            }
        },
        p384: loop {
            if let Ok(k) = p384::ecdsa::SigningKey::from_slice(&random::<48>()) {
                break k;
            }
        },
        p521: loop {
            // A P-521 scalar is 521 bits: the top byte holds one bit.
            let mut bytes = random::<66>();
            bytes[0] &= 1;
            if let Ok(k) = p521::ecdsa::SigningKey::from_slice(&bytes) {
                break k;
            }
        },
        ed: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(random::<32>())),
        hmac: random::<64>().to_vec(),
    })
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl RsaTestKey {
    pub fn jwk(&self, kid: &str) -> Value {
        let pk = self.private.to_public_key();
        json!({"kty": "RSA", "kid": kid, "n": b64(pk.n().to_bytes_be()), "e": b64(pk.e().to_bytes_be())})
    }

    /// RS256 in-process (the `rsa` crate): for benchmarks that need thousands of tokens.
    pub fn rs256(&self, input: &[u8]) -> Vec<u8> {
        use rsa::signature::{SignatureEncoding, Signer};
        let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(self.private.clone());
        key.sign(input).to_vec()
    }

    /// Signs with the openssl CLI (PKCS#1 v1.5, or PSS with salt = hash length).
    pub fn openssl_sign(&self, digest: &str, pss: bool, input: &[u8]) -> Vec<u8> {
        let mut cmd = Command::new("openssl");
        cmd.args(["dgst", &format!("-{digest}"), "-sign"])
            .arg(&self.pem_path);
        if pss {
            cmd.args([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }
}

pub fn p256_jwk(kid: &str) -> Value {
    let point = keys().p256.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
}

pub fn p384_jwk(kid: &str) -> Value {
    let point = keys().p384.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-384", "kid": kid, "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
}

pub fn p521_jwk(kid: &str) -> Value {
    let point = p521::ecdsa::VerifyingKey::from(&keys().p521).to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-521", "kid": kid, "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
}

pub fn ed_jwk(kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(*keys().ed.pk)})
}

pub fn hmac_jwk(kid: &str) -> Value {
    json!({"kty": "oct", "kid": kid, "k": b64(&keys().hmac)})
}

pub fn hmac(alg: &str, secret: &[u8], input: &[u8]) -> Vec<u8> {
    macro_rules! mac {
        ($d:ty) => {{
            let mut m = <Hmac<$d> as Mac>::new_from_slice(secret).unwrap();
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        "HS256" => mac!(sha2::Sha256),
        "HS384" => mac!(sha2::Sha384),
        _ => mac!(sha2::Sha512),
    }
}

/// A token with the given header (alg and kid) and claims, signed by the matching test key.
pub fn sign(header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let k = keys();
    let alg = header["alg"].as_str().unwrap();
    let sig = match alg {
        "RS256" => k.rsa.openssl_sign("sha256", false, input.as_bytes()),
        "RS384" => k.rsa.openssl_sign("sha384", false, input.as_bytes()),
        "RS512" => k.rsa.openssl_sign("sha512", false, input.as_bytes()),
        "PS256" => k.rsa.openssl_sign("sha256", true, input.as_bytes()),
        "PS384" => k.rsa.openssl_sign("sha384", true, input.as_bytes()),
        "PS512" => k.rsa.openssl_sign("sha512", true, input.as_bytes()),
        "ES256" => {
            use p256::ecdsa::signature::Signer;
            let s: p256::ecdsa::Signature = k.p256.sign(input.as_bytes());
            s.to_bytes().to_vec()
        }
        "ES384" => {
            use p384::ecdsa::signature::Signer;
            let s: p384::ecdsa::Signature = k.p384.sign(input.as_bytes());
            s.to_bytes().to_vec()
        }
        "ES512" => {
            use p521::ecdsa::signature::Signer;
            let s: p521::ecdsa::Signature = k.p521.sign(input.as_bytes());
            s.to_bytes().to_vec()
        }
        "EdDSA" => k.ed.sk.sign(input.as_bytes(), None).to_vec(),
        hs => hmac(hs, &k.hmac, input.as_bytes()),
    };
    format!("{input}.{}", b64(sig))
}

/// A JWKS holding every test public key (and, for local use, the HMAC secret).
pub fn jwks(with_hmac: bool) -> Value {
    let k = keys();
    let mut list = vec![
        k.rsa.jwk("rsa-1"),
        p256_jwk("ec-1"),
        p384_jwk("ec384-1"),
        p521_jwk("ec521-1"),
        ed_jwk("ed-1"),
    ];
    if with_hmac {
        list.push(hmac_jwk("hs-1"));
    }
    json!({ "keys": list })
}

pub fn kid_for(alg: &str) -> &'static str {
    match alg {
        "ES256" => "ec-1",
        "ES384" => "ec384-1",
        "ES512" => "ec521-1",
        "EdDSA" => "ed-1",
        a if a.starts_with("HS") => "hs-1",
        _ => "rsa-1",
    }
}

/// The claims every test token carries unless a case changes them: issued at `now`, valid for
/// ten minutes, issuer `https://idp`, audience `api`.
pub fn claims(now: u64) -> Value {
    json!({"iss": "https://idp", "aud": "api", "sub": "user-1", "exp": now + 600, "iat": now,
           "scope": "orders:read", "groups": ["orders-write"], "tenant": "acme", "org": {"id": 7}})
}

/// A valid token for `alg`, signed by the matching test key under its usual kid.
pub fn token(alg: &str, now: u64) -> String {
    sign(
        &json!({"alg": alg, "kid": kid_for(alg), "typ": "JWT"}),
        &claims(now),
    )
}

/// A key store for configurations with local keys only: no remote keys, no fetches.
pub struct NoRemote;

impl crate::engine::KeyStore for NoRemote {
    fn keys(
        &self,
        _: crate::rules::ProviderId,
        _: u64,
    ) -> Option<std::sync::Arc<crate::jwks::KeySet>> {
        None
    }
    fn request_keys(
        &mut self,
        _: crate::rules::ProviderId,
        _: u64,
    ) -> crate::jwks_cache::KeyRequest {
        crate::jwks_cache::KeyRequest::Refused
    }
}

/// One hostile or broken token and the refusal it must get.
pub struct AttackCase {
    pub name: String,
    pub token: String,
    pub expect: Denial,
}

/// The attack corpus for a provider configured like the tests' `idp`: issuer `https://idp`,
/// audience `api`, `require_expiration: true`, `max_lifetime: 3600s`, default clock skew,
/// default `sub_format`, keys from [`jwks`] (kid `rsa-1` is the RSA key). Times are relative to `now` (Unix seconds).
pub fn attack_corpus(now: u64) -> Vec<AttackCase> {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(now);
        f(&mut c);
        sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &c)
    };
    let body = b64(claims(now).to_string());
    let valid = token("RS256", now);
    let parts: Vec<&str> = valid.split('.').collect();
    // Changing the first character always changes the signature's first byte.
    let flipped = if parts[2].starts_with('A') { 'B' } else { 'A' };
    let malformed = Denial::from(TokenError::Malformed);
    let bad_sig = Denial::from(VerifyError::BadSignature);
    let unknown_kid = Denial::from(VerifyError::UnknownKid);
    let invalid_claim = Denial::from(ClaimError::InvalidIdentity);
    let mut cases: Vec<(String, String, Denial)> = vec![
        (
            "expired".into(),
            with(&|c| c["exp"] = json!(now - 61)),
            ClaimError::Expired.into(),
        ),
        (
            "nbf in the future".into(),
            with(&|c| c["nbf"] = json!(now + 3000)),
            ClaimError::NotYetValid.into(),
        ),
        (
            "iat beyond skew".into(),
            with(&|c| c["iat"] = json!(now + 120)),
            ClaimError::IssuedInFuture.into(),
        ),
        (
            "wrong iss".into(),
            with(&|c| c["iss"] = json!("https://evil")),
            ClaimError::WrongIssuer.into(),
        ),
        (
            "wrong aud".into(),
            with(&|c| c["aud"] = json!("other")),
            ClaimError::WrongAudience.into(),
        ),
        (
            "missing exp".into(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            ClaimError::MissingExp.into(),
        ),
        (
            "lifetime over max".into(),
            with(&|c| c["exp"] = json!(now + 7200)),
            ClaimError::LifetimeTooLong.into(),
        ),
        (
            "tampered payload".into(),
            format!("{}.{}.{}", parts[0], b64(r#"{"sub":"admin"}"#), parts[2]),
            bad_sig,
        ),
        (
            "tampered signature".into(),
            format!("{}.{}.{flipped}{}", parts[0], parts[1], &parts[2][1..]),
            bad_sig,
        ),
        (
            "truncated".into(),
            format!("{}.{}", parts[0], parts[1]),
            malformed,
        ),
        (
            "extra segment".into(),
            format!("{valid}.{}", parts[2]),
            malformed,
        ),
        (
            "non-base64url".into(),
            format!("{}.{}+.{}", parts[0], parts[1], parts[2]),
            malformed,
        ),
        (
            "oversize".into(),
            format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
            TokenError::Oversize.into(),
        ),
        (
            "sub missing".into(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            invalid_claim,
        ),
        (
            "sub padded".into(),
            with(&|c| c["sub"] = json!(" user-1")),
            invalid_claim,
        ),
        (
            "sub with a trailing tab".into(),
            with(&|c| c["sub"] = json!("user-1\t")),
            invalid_claim,
        ),
        (
            "sub with a comma".into(),
            with(&|c| c["sub"] = json!("7,99")),
            invalid_claim,
        ),
        (
            "sub not ASCII".into(),
            with(&|c| c["sub"] = json!("us\u{e9}r-1")),
            invalid_claim,
        ),
        (
            "sub a number".into(),
            with(&|c| c["sub"] = json!(1)),
            invalid_claim,
        ),
        (
            "unknown kid".into(),
            sign(&json!({"alg": "RS256", "kid": "nope"}), &claims(now)),
            unknown_kid,
        ),
        (
            "crit".into(),
            format!(
                "{}.{body}.{}",
                b64(r#"{"alg":"RS256","kid":"rsa-1","crit":["x"],"x":1}"#),
                parts[2]
            ),
            TokenError::Crit.into(),
        ),
    ];
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(format!(r#"{{"alg":"{alg}"}}"#));
        cases.push((format!("alg {alg}"), format!("{header}.{body}."), malformed));
        cases.push((
            format!("alg {alg} signed"),
            format!("{header}.{body}.{}", parts[2]),
            TokenError::AlgNone.into(),
        ));
    }
    for kid in [
        "../../etc/passwd",
        "rsa-1\"",
        "{\"kid\":\"rsa-1\"}",
        "rsa-1\u{0}",
        "rsa-1 ",
    ] {
        let t = sign(&json!({"alg": "RS256", "kid": kid}), &claims(now));
        cases.push((format!("kid {kid:?}"), t, unknown_kid));
    }
    // RS256 -> HS256 confusion: an HMAC "signed" with the RSA public key (PEM and JWK forms)
    // under the RSA key's kid. The key's type pins its algorithm family.
    let k = keys();
    for (form, secret) in [
        ("PEM", k.rsa.public_pem.clone().into_bytes()),
        ("JWK", k.rsa.jwk("rsa-1").to_string().into_bytes()),
    ] {
        let input = format!("{}.{body}", b64(r#"{"alg":"HS256","kid":"rsa-1"}"#));
        let t = format!("{input}.{}", b64(hmac("HS256", &secret, input.as_bytes())));
        cases.push((
            format!("HS256 signed with the RSA public key ({form})"),
            t,
            VerifyError::NoMatchingKey.into(),
        ));
    }
    cases
        .into_iter()
        .map(|(name, token, expect)| AttackCase {
            name,
            token,
            expect,
        })
        .collect()
}
