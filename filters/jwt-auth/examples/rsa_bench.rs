//! Times RS256 verification natively: this crate's `verify::monty` path against the `rsa` 0.9 crate that
//! jwt-compact uses. `cargo run --release -p jwt-auth --example rsa_bench [iterations]`.
//! (The rsa 0.10 pre-release was measured the same way in a scratch crate; see the README.)

use jwt_auth::verify::rsa::{Hash, RsaPublicKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use std::process::Command;
use std::time::Instant;

fn time(name: &str, n: u32, mut f: impl FnMut() -> bool) {
    assert!(f(), "{name} must verify");
    let start = Instant::now();
    for _ in 0..n {
        assert!(f());
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("{name:<36} {us:>8.1} us/verify");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()?;
    let pem = String::from_utf8(out.stdout)?;
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)?;
    let public = private.to_public_key();
    let msg = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEiLCJleHAiOjE3MDAwMDAwMDB9";
    let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private)
        .sign(msg)
        .to_vec();

    let ours = RsaPublicKey::new(&public.n().to_bytes_be(), &public.e().to_bytes_be())
        .map_err(|e| e.to_string())?;
    time("jwt-auth (verify::monty, scalar)", n, || {
        ours.verify_pkcs1v15(Hash::Sha256, msg, &sig)
    });

    let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public);
    let s = rsa::pkcs1v15::Signature::try_from(sig.as_slice())?;
    time("rsa 0.9 (num-bigint-dig)", n, || vk.verify(msg, &s).is_ok());
    Ok(())
}
