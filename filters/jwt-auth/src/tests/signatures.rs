//! Every algorithm against independently signed tokens, algorithm confusion, and JWKS parsing.

use super::*;

#[test]
fn every_algorithm_verifies_independently_signed_tokens() {
    let set = local_set();
    for alg in ALGS {
        let t = token(alg);
        assert_eq!(verify_token(&set, &t), Ok(()), "{alg}");
        // Tampered payload and tampered signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let tampered = format!("{}.{}.{}", parts[0], b64(evil.to_string()), parts[2]);
        assert_eq!(
            verify_token(&set, &tampered),
            Err(VerifyError::BadSignature),
            "{alg}"
        );
        let mut sig = crate::token::parse(&t, 8192).unwrap().signature;
        sig[0] ^= 1;
        parts[2] = b64(&sig);
        assert_eq!(
            verify_token(&set, &parts.join(".")),
            Err(VerifyError::BadSignature),
            "{alg}"
        );
        sig.pop();
        parts[2] = b64(&sig);
        assert_eq!(
            verify_token(&set, &parts.join(".")),
            Err(VerifyError::BadSignature),
            "{alg} short"
        );
    }
}

#[test]
fn tokens_signed_by_jwt_compact_verify() {
    use jwt_compact::alg::{Ed25519, Es256, Rsa};
    use jwt_compact::{AlgorithmExt, Claims, Header};
    let set = local_set();
    let k = keys();
    let c = Claims::new(json!({"sub": "x"}));
    let rs = Rsa::rs256()
        .token(&Header::empty().with_key_id("rsa-1"), &c, &k.rsa.private)
        .unwrap();
    assert_eq!(verify_token(&set, &rs), Ok(()));
    let ps = Rsa::ps256()
        .token(&Header::empty().with_key_id("rsa-1"), &c, &k.rsa.private)
        .unwrap();
    assert_eq!(verify_token(&set, &ps), Ok(()));
    let es = Es256
        .token(&Header::empty().with_key_id("ec-1"), &c, &k.p256)
        .unwrap();
    assert_eq!(verify_token(&set, &es), Ok(()));
    let ed = Ed25519
        .token(&Header::empty().with_key_id("ed-1"), &c, &k.ed.sk)
        .unwrap();
    assert_eq!(verify_token(&set, &ed), Ok(()));
    // A token from the other RSA key under the same kid fails.
    let set2 =
        KeySet::from_value(&json!({"keys": [k.rsa2.jwk("rsa-1")]}), JwksOrigin::Remote).unwrap();
    assert_eq!(verify_token(&set2, &rs), Err(VerifyError::BadSignature));
}

#[test]
fn in_process_rs256_signing_matches_openssl() {
    let k = keys();
    let input = b"header.payload";
    assert_eq!(
        k.rsa.rs256(input),
        k.rsa.openssl_sign("sha256", false, input)
    );
}

#[test]
fn alg_confusion_is_impossible() {
    let k = keys();
    let set = local_set();
    let body = b64(claims().to_string());
    // HS256 "signed" with the RSA public key as the HMAC secret, in PEM and JWK forms, under
    // the RSA key's kid, another kid and no kid.
    let secrets = [
        k.rsa.public_pem.clone().into_bytes(),
        k.rsa.jwk("rsa-1").to_string().into_bytes(),
    ];
    for secret in &secrets {
        for kid in [Some("rsa-1"), None] {
            let mut h = json!({"alg": "HS256"});
            if let Some(kid) = kid {
                h["kid"] = json!(kid);
            }
            let input = format!("{}.{body}", b64(h.to_string()));
            let t = format!("{input}.{}", b64(hmac("HS256", secret, input.as_bytes())));
            assert!(verify_token(&set, &t).is_err(), "{kid:?}");
        }
    }
    // A remote JWKS can never carry an HMAC secret, so a remote-only provider has no HS key.
    let remote = KeySet::from_value(&jwks(true), JwksOrigin::Remote).unwrap();
    assert!(remote.skipped.iter().any(|s| s.contains("symmetric")));
    let hs = token("HS256");
    assert_eq!(verify_token(&remote, &hs), Err(VerifyError::UnknownKid));
    // ES256 token presented with an RSA kid, RS256 with an EC kid.
    let t = sign(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims());
    assert_eq!(verify_token(&set, &t), Err(VerifyError::NoMatchingKey));
    let t = sign(&json!({"alg": "RS256", "kid": "ec-1"}), &claims());
    assert_eq!(verify_token(&set, &t), Err(VerifyError::NoMatchingKey));
}

#[test]
fn jwk_alg_and_use_pin_keys() {
    let k = keys();
    let mut pinned = k.rsa.jwk("rsa-1");
    pinned["alg"] = json!("PS256");
    let set = KeySet::from_value(&json!({"keys": [pinned]}), JwksOrigin::Remote).unwrap();
    assert_eq!(
        verify_token(&set, &token("RS256")),
        Err(VerifyError::NoMatchingKey)
    );
    assert_eq!(verify_token(&set, &token("PS256")), Ok(()));
    let mut enc = k.rsa.jwk("rsa-1");
    enc["use"] = json!("enc");
    let mut ok = k.rsa2.jwk("other");
    ok["use"] = json!("sig");
    let set = KeySet::from_value(&json!({"keys": [enc, ok]}), JwksOrigin::Remote).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(
        verify_token(&set, &token("RS256")),
        Err(VerifyError::UnknownKid)
    );
    // No kid: every fitting key is tried.
    let set = KeySet::from_value(
        &json!({"keys": [k.rsa2.jwk("x"), k.rsa.jwk("y")]}),
        JwksOrigin::Remote,
    )
    .unwrap();
    let t = sign(&json!({"alg": "RS256"}), &claims());
    assert_eq!(verify_token(&set, &t), Ok(()));
}

#[test]
fn jwks_parsing_skips_bad_keys_and_refuses_empty_sets() {
    let k = keys();
    let small = json!({"kty": "RSA", "kid": "small", "n": b64([0xc5u8; 128]), "e": "AQAB"});
    let bad_e = json!({"kty": "RSA", "kid": "e", "n": k.rsa.jwk("x")["n"], "e": "Ag"});
    let doc = json!({"keys": [small, bad_e, {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "x": "AA"}, {"kty": "foo"}, 5, p256_jwk("good")]});
    let set = KeySet::from_value(&doc, JwksOrigin::Remote).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.skipped.len(), 6, "{:?}", set.skipped);
    let mut off_curve = p256_jwk("bad");
    off_curve["y"] = off_curve["x"].clone();
    assert!(KeySet::from_value(&json!({"keys": [off_curve]}), JwksOrigin::Remote).is_err());
    assert!(KeySet::parse(b"<html>", JwksOrigin::Remote).is_err());
    assert!(KeySet::parse(br#"{"keys": []}"#, JwksOrigin::Remote).is_err());
    assert!(KeySet::parse(br#"{"keys": {}}"#, JwksOrigin::Remote).is_err());
}

/// A token naming a kid no key has is tried against the keys that name none (as
/// jwt_verify_lib does); with no such key it is an unknown kid (which may trigger a refetch).
#[test]
fn an_unknown_kid_falls_back_to_keys_without_a_kid() {
    let k = keys();
    let mut kidless = p521_jwk("x");
    kidless.as_object_mut().unwrap().remove("kid");
    let set = KeySet::from_value(
        &json!({"keys": [k.rsa.jwk("rsa-1"), kidless]}),
        JwksOrigin::Remote,
    )
    .unwrap();
    let t = sign(&json!({"alg": "ES512", "kid": "rotated-away"}), &claims());
    assert_eq!(verify_token(&set, &t), Ok(()));
    let named =
        KeySet::from_value(&json!({"keys": [p521_jwk("ec521-1")]}), JwksOrigin::Remote).unwrap();
    assert_eq!(verify_token(&named, &t), Err(VerifyError::UnknownKid));
    // A kid that a key has never falls back: that key decides.
    let both = KeySet::from_value(
        &json!({"keys": [p384_jwk("rotated-away"), p521_jwk("ec521-1")]}),
        JwksOrigin::Remote,
    )
    .unwrap();
    assert_eq!(verify_token(&both, &t), Err(VerifyError::NoMatchingKey));
}
