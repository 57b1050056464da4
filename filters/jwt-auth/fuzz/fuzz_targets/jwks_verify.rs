//! A JWKS document and a token from one input (split at the first NUL): parsing the key set,
//! choosing keys and verifying signatures (RSA Montgomery arithmetic on arbitrary moduli and
//! exponents, EC points, Ed25519 keys) must never panic, whatever the IdP or client sends.
#![no_main]

use jwt_auth::jwks::{JwksOrigin, KeySet};
use jwt_auth::token::parse;
use jwt_auth::verify::verify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (jwks, token) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    for origin in [JwksOrigin::Remote, JwksOrigin::Local] {
        let Ok(set) = KeySet::parse(jwks, origin) else {
            continue;
        };
        let token = String::from_utf8_lossy(token);
        if let Ok(jwt) = parse(&token, 8192) {
            let _ = verify(
                &set,
                &jwt.header,
                jwt.signing_input.as_bytes(),
                &jwt.signature,
            );
        }
    }
});
