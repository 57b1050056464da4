//! Times RS256 verification inside a wasm VM: build for wasm32-wasip1 and run under node's V8
//! (scripts/rsa-vm-bench.sh does both, with a key made by openssl at run time).
//!
//! `rsa_vm_bench N_HEX SIG_HEX MSG [iterations]`: the modulus (big-endian hex), an RS256
//! signature of MSG by that key (hex, e = 65537), and the message. Arguments rather than files:
//! node's WASI refuses Rust's file opens.

use jwt_auth::verify::rsa::{Hash, RsaPublicKey};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [n_hex, sig_hex, msg, ..] = args.as_slice() else {
        return Err("usage: rsa_vm_bench N_HEX SIG_HEX MSG [iterations]".into());
    };
    let n: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let key = RsaPublicKey::new(&unhex(n_hex)?, &[1, 0, 1])?;
    let (msg, sig) = (msg.as_bytes().to_vec(), unhex(sig_hex)?);
    if !key.verify_pkcs1v15(Hash::Sha256, &msg, &sig) {
        return Err("the signature does not verify".into());
    }
    let mut bad = sig.clone();
    bad[10] ^= 1;
    if key.verify_pkcs1v15(Hash::Sha256, &msg, &bad) {
        return Err("a changed signature verifies".into());
    }
    let start = Instant::now();
    for _ in 0..n {
        if !key.verify_pkcs1v15(Hash::Sha256, &msg, &sig) {
            return Err("the signature stopped verifying".into());
        }
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("RS256 verification (2048-bit): {us:.1} us/verify over {n}");
    Ok(())
}

fn unhex(text: &str) -> Result<Vec<u8>, std::num::ParseIntError> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
        .collect()
}
