//! Test-only key generation and token signing. Keys are made at test time (RSA by the
//! `openssl` CLI, which also signs RS*/PS* tokens as an independent implementation; EC and
//! Ed25519 by their crates from random seeds). Nothing here is committed key material.

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
    pub ed: ed25519_compact::KeyPair,
    pub hmac: Vec<u8>,
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).unwrap();
    b
}

fn rsa_key(tag: &str) -> RsaTestKey {
    let path = std::env::temp_dir().join(format!("jwt-auth-test-{}-{tag}.pem", std::process::id()));
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
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
        "EdDSA" => "ed-1",
        a if a.starts_with("HS") => "hs-1",
        _ => "rsa-1",
    }
}
