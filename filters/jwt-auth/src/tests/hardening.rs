//! Regression tests for the security review's findings 10-12: identity claims that are missing
//! or unusable are refused (never admitted without identity, never aliased), and verification
//! work per token is bounded.

use super::*;

/// A token under the RSA key with `claims` changed by `f`.
fn with_claims(f: impl Fn(&mut Value)) -> String {
    let mut c = claims();
    f(&mut c);
    sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &c)
}

fn remove(c: &mut Value, name: &str) {
    c.as_object_mut().unwrap().remove(name);
}

/// Each bad `sub` is refused with 401 `invalid_claim`, before any header reaches the upstream.
#[test]
fn unusable_sub_is_refused_with_invalid_claim() {
    let mut e = engine(json!({}));
    let cases: Vec<(&str, String)> = vec![
        ("missing", with_claims(|c| remove(c, "sub"))),
        ("empty", with_claims(|c| c["sub"] = json!(""))),
        ("numeric", with_claims(|c| c["sub"] = json!(42))),
        ("null", with_claims(|c| c["sub"] = json!(null))),
        ("array", with_claims(|c| c["sub"] = json!(["alice"]))),
        ("leading space", with_claims(|c| c["sub"] = json!(" alice"))),
        ("trailing tab", with_claims(|c| c["sub"] = json!("alice\t"))),
        ("comma", with_claims(|c| c["sub"] = json!("7,99"))),
        (
            "control char",
            with_claims(|c| c["sub"] = json!("ali\u{1}ce")),
        ),
        (
            "newline",
            with_claims(|c| c["sub"] = json!("alice\r\nx-admin: 1")),
        ),
        ("non-ASCII", with_claims(|c| c["sub"] = json!("аlice"))),
        (
            "too long",
            with_claims(|c| c["sub"] = json!("a".repeat(257))),
        ),
    ];
    for (what, t) in cases {
        let d = run(&mut e, &request("GET", "/things", Some(&t)));
        let got = denial(&d);
        assert_eq!((got.status(), got.reason), (401, "invalid_claim"), "{what}");
        assert_eq!(got.error_code(), "invalid_token", "{what}");
        assert!(
            got.www_authenticate("api")
                .starts_with(r#"Bearer realm="api", error="invalid_token""#),
            "{what}"
        );
        assert!(sets(&d).is_empty(), "{what}: nothing is set upstream");
    }
}

/// The same rules for `org.id` (claim_to_headers) and `tenant` (tenant_claim).
#[test]
fn unusable_mapped_claims_are_refused_with_invalid_claim() {
    let mut e = engine(json!({}));
    let bad: Vec<Value> = vec![
        json!(""),
        json!(" 7"),
        json!("7\t"),
        json!("7,99"),
        json!("7\u{7f}"),
        json!("seven\u{e9}"),
        json!(7.5),
        json!(true),
        json!([7, 99]),
        json!({"id": 7}),
        json!(null),
    ];
    for v in &bad {
        let org = with_claims(|c| c["org"]["id"] = v.clone());
        let d = denial(&run(&mut e, &request("GET", "/x", Some(&org))));
        assert_eq!(d.reason, "invalid_claim", "org.id {v}");
        let tenant = with_claims(|c| c["tenant"] = v.clone());
        let d = denial(&run(&mut e, &request("GET", "/x", Some(&tenant))));
        assert_eq!(d.reason, "invalid_claim", "tenant {v}");
    }
    for (what, t) in [
        ("no org", with_claims(|c| remove(c, "org"))),
        ("no org.id", with_claims(|c| c["org"] = json!({}))),
        ("no tenant", with_claims(|c| remove(c, "tenant"))),
    ] {
        let d = denial(&run(&mut e, &request("GET", "/x", Some(&t))));
        assert_eq!(d.reason, "invalid_claim", "{what}");
    }
}

/// Values in the documented set pass unchanged, integers as their decimal text.
#[test]
fn valid_identity_claims_pass_unchanged() {
    let mut e = engine(json!({}));
    for (sub, org, tenant) in [
        ("alice", json!(7), "acme"),
        ("user.name+tag@example.com", json!("org-7"), "acme_eu"),
        ("urn:idp:users:00u1a2b3C4", json!(-3), "t.1"),
        ("A", json!(18446744073709551615u64), "x"),
    ] {
        let t = with_claims(|c| {
            c["sub"] = json!(sub);
            c["org"]["id"] = org.clone();
            c["tenant"] = json!(tenant);
        });
        let d = run(&mut e, &request("GET", "/x", Some(&t)));
        assert_eq!(d.outcome, Outcome::Allow, "{sub}");
        let s = sets(&d);
        assert_eq!(s["x-user-id"], sub);
        let org_text = match &org {
            Value::String(s) => s.clone(),
            n => n.to_string(),
        };
        assert_eq!(s["x-org-id"], org_text);
        assert_eq!(s["x-tenant-id"], tenant);
    }
    let max = with_claims(|c| c["sub"] = json!("a".repeat(256)));
    assert_eq!(
        run(&mut e, &request("GET", "/x", Some(&max))).outcome,
        Outcome::Allow
    );
}

/// `sub_format`, `tenant_format` and the per-entry fields of `claim_to_headers`.
#[test]
fn identity_formats_are_configurable_per_claim() {
    // An optional claim may be absent (no header); present but unusable is still refused.
    let mut e = engine(json!({
        "sub_format": {"optional": true},
        "claim_to_headers": [{"header_name": "x-org-id", "claim_name": "org.id", "optional": true}],
        "tenant_format": {"optional": true},
    }));
    let bare = with_claims(|c| {
        remove(c, "sub");
        remove(c, "org");
        remove(c, "tenant");
    });
    let d = run(&mut e, &request("GET", "/x", Some(&bare)));
    assert_eq!(d.outcome, Outcome::Allow);
    let s = sets(&d);
    assert!(
        !s.contains_key("x-user-id")
            && !s.contains_key("x-org-id")
            && !s.contains_key("x-tenant-id"),
        "{s:?}"
    );
    for t in [
        with_claims(|c| c["sub"] = json!(" alice")),
        with_claims(|c| c["org"]["id"] = json!("7,99")),
        with_claims(|c| c["tenant"] = json!("")),
        with_claims(|c| c["sub"] = json!(null)),
    ] {
        let d = denial(&run(&mut e, &request("GET", "/x", Some(&t))));
        assert_eq!(d.reason, "invalid_claim");
    }
    // Own character sets and lengths: Auth0-style subjects, digits-only org ids.
    let mut e = engine(json!({
        "sub_format": {"charset": "a-z0-9|", "max_length": 16},
        "claim_to_headers": [{"header_name": "x-org-id", "claim_name": "org.id", "charset": "0-9"}],
    }));
    let ok = with_claims(|c| c["sub"] = json!("auth0|abc123"));
    let d = run(&mut e, &request("GET", "/x", Some(&ok)));
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(sets(&d)["x-user-id"], "auth0|abc123");
    for t in [
        with_claims(|c| c["sub"] = json!("Alice")),
        with_claims(|c| c["sub"] = json!("a".repeat(17))),
        with_claims(|c| c["org"]["id"] = json!(-7)),
        with_claims(|c| c["org"]["id"] = json!("7a")),
    ] {
        let d = denial(&run(&mut e, &request("GET", "/x", Some(&t))));
        assert_eq!(d.reason, "invalid_claim");
    }
}

/// A bad identity is never admitted as "no identity": not through `requires_any` with
/// `allow_missing`, and not from the verified-token cache.
#[test]
fn bad_identity_is_not_admitted_by_other_paths() {
    let mut e = engine(json!({}));
    let bad = with_claims(|c| c["sub"] = json!("alice "));
    let d = denial(&run(&mut e, &request("GET", "/optional", Some(&bad))));
    assert_eq!(d.reason, "invalid_claim");
    let again = run(&mut e, &request("GET", "/x", Some(&bad)));
    assert_eq!(
        (denial(&again).reason, again.cache_hits),
        ("invalid_claim", 0)
    );
    // A cache hit forwards the same vetted identity as the first verification.
    let good = with_claims(|c| c["sub"] = json!("alice"));
    let first = run(&mut e, &request("GET", "/x", Some(&good)));
    let hit = run(&mut e, &request("GET", "/x", Some(&good)));
    assert_eq!(hit.cache_hits, 1);
    assert_eq!(sets(&first), sets(&hit));
    assert_eq!(sets(&hit)["x-user-id"], "alice");
}

#[test]
fn identity_config_errors_name_the_field() {
    let e = |extra: Value| {
        FilterConfig::parse(config_json(extra, json!([])).as_bytes())
            .unwrap_err()
            .field
    };
    let entry = |more: Value| {
        let mut c = json!({"header_name": "x-org-id", "claim_name": "org.id"});
        for (k, v) in more.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({ "claim_to_headers": [c] })
    };
    let p = "providers.idp";
    for (extra, field) in [
        (
            entry(json!({"charset": "a,b"})),
            "claim_to_headers[0].charset",
        ),
        (
            entry(json!({"charset": "!-~"})),
            "claim_to_headers[0].charset",
        ),
        (entry(json!({"charset": ""})), "claim_to_headers[0].charset"),
        (
            entry(json!({"max_length": 0})),
            "claim_to_headers[0].max_length",
        ),
        (
            entry(json!({"max_length": 5000})),
            "claim_to_headers[0].max_length",
        ),
        (
            entry(json!({"optional": "yes"})),
            "claim_to_headers[0].optional",
        ),
        (
            entry(json!({"pattern": ".*"})),
            "claim_to_headers[0].pattern",
        ),
        (
            json!({"sub_format": {"charset": "z-a"}}),
            "sub_format.charset",
        ),
        (
            json!({"sub_format": {"charset": "a b"}}),
            "sub_format.charset",
        ),
        (
            json!({"sub_format": {"required": true}}),
            "sub_format.required",
        ),
        (
            json!({"tenant_format": {"max_length": 0}}),
            "tenant_format.max_length",
        ),
        (json!({"max_rsa_key_bits": 1024}), "max_rsa_key_bits"),
        (json!({"max_rsa_key_bits": 16384}), "max_rsa_key_bits"),
    ] {
        assert_eq!(e(extra.clone()), format!("{p}.{field}"), "{extra}");
    }
    let mut no_tenant: Value =
        serde_json::from_str(&config_json(json!({"tenant_format": {}}), json!([]))).unwrap();
    no_tenant["providers"]["idp"]
        .as_object_mut()
        .unwrap()
        .remove("tenant_claim");
    let err = FilterConfig::parse(no_tenant.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.field, "providers.idp.tenant_format");
}

// ---------------------------------------------------------------------------------------------
// Bounded verification work.

/// 64 RSA keys (the JWKS maximum), each the test RSA key under its own kid.
fn many_rsa_keys() -> Vec<Value> {
    (0..64).map(|i| keys().rsa.jwk(&format!("k{i}"))).collect()
}

fn checks(set: &KeySet, t: &str) -> (Result<(), VerifyError>, u32) {
    let jwt = parse(t, 8192).unwrap();
    let mut n = 0;
    let r = crate::verify::verify_counted(
        set,
        &jwt.header,
        jwt.signing_input.as_bytes(),
        &jwt.signature,
        &mut n,
    );
    (r, n)
}

#[test]
fn kidless_forged_token_costs_at_most_three_signature_checks() {
    let k = keys();
    let set = KeySet::from_value(&json!({ "keys": many_rsa_keys() }), JwksOrigin::Remote).unwrap();
    assert_eq!(set.keys.len(), 64);
    // Forged: signed by a key the set does not have, no kid.
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "RS256"}).to_string()),
        b64(claims().to_string())
    );
    let forged = format!("{input}.{}", b64(k.rsa2.rs256(input.as_bytes())));
    assert_eq!(checks(&set, &forged), (Err(VerifyError::KidRequired), 3));
    // Genuine and kid-less: the first fitting key verifies it.
    let genuine = format!("{input}.{}", b64(k.rsa.rs256(input.as_bytes())));
    assert_eq!(checks(&set, &genuine), (Ok(()), 1));
    // With a kid: that key only.
    let input_kid = format!(
        "{}.{}",
        b64(json!({"alg": "RS256", "kid": "k40"}).to_string()),
        b64(claims().to_string())
    );
    let forged_kid = format!("{input_kid}.{}", b64(k.rsa2.rs256(input_kid.as_bytes())));
    assert_eq!(
        checks(&set, &forged_kid),
        (Err(VerifyError::BadSignature), 1)
    );
    // Keys whose type does not fit the alg cost nothing.
    let mut mixed = many_rsa_keys();
    mixed.truncate(63);
    mixed.push(p256_jwk("ec"));
    let mixed = KeySet::from_value(&json!({ "keys": mixed }), JwksOrigin::Remote).unwrap();
    let es = sign(&json!({"alg": "ES256"}), &claims());
    assert_eq!(checks(&mixed, &es), (Ok(()), 1));
    // Many keys under one kid are capped the same way.
    let d = k.rsa2.jwk("d");
    let dup = KeySet::from_value(
        &json!({"keys": [d.clone(), d.clone(), d, k.rsa.jwk("d")]}),
        JwksOrigin::Remote,
    )
    .unwrap();
    let t = sign(&json!({"alg": "RS256", "kid": "d"}), &claims());
    assert_eq!(checks(&dup, &t), (Err(VerifyError::BadSignature), 3));
    // Through the engine: refused as kid_required, with three checks spent.
    let mut e = engine(json!({"local_jwks": {"inline": {"keys": many_rsa_keys()}}}));
    let d = run(&mut e, &request("GET", "/x", Some(&forged)));
    assert_eq!((denial(&d).reason, d.signature_checks), ("kid_required", 3));
    assert_eq!(denial(&d).status(), 401);
}

fn rsa_jwk(kid: &str, n: &[u8], e: &[u8]) -> Value {
    json!({"kty": "RSA", "kid": kid, "n": b64(n), "e": b64(e)})
}

#[test]
fn rsa_exponents_other_than_3_and_65537_are_refused_at_load() {
    use rsa::traits::PublicKeyParts;
    let n = keys().rsa.private.to_public_key().n().to_bytes_be();
    let mut list = vec![
        rsa_jwk("e-3", &n, &[3]),
        rsa_jwk("e-65537", &n, &[1, 0, 1]),
        rsa_jwk("e-65537-padded", &n, &[0, 1, 0, 1]),
    ];
    let refused: [&[u8]; 7] = [
        &[5],
        &[17],
        &[1, 1],
        &[1, 0, 3],
        &[0xff, 0xff, 0xff, 0xff],
        &[1, 0, 0, 0, 1],
        &[2],
    ];
    for (i, e) in refused.iter().enumerate() {
        list.push(rsa_jwk(&format!("bad-{i}"), &n, e));
    }
    let set = KeySet::from_value(&json!({ "keys": list }), JwksOrigin::Remote).unwrap();
    let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
    assert_eq!(kids, ["e-3", "e-65537", "e-65537-padded"]);
    assert_eq!(set.skipped.len(), refused.len());
    let n_b64 = b64(&n);
    for (i, why) in set.skipped.iter().enumerate() {
        assert!(why.contains(&format!("(kid \"bad-{i}\")")), "{why}");
        assert!(why.contains("RSA exponent must be 3 or 65537"), "{why}");
        assert!(!why.contains(&n_b64[..16]), "no key material: {why}");
    }
    // Exponent 3 verifies real signatures (an openssl key made with e = 3).
    let e3 = crate::testing::rsa_key_with_exponent("e3", 3);
    let set = KeySet::from_value(&json!({"keys": [e3.jwk("e3")]}), JwksOrigin::Remote).unwrap();
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "RS256", "kid": "e3"}).to_string()),
        b64(claims().to_string())
    );
    let t = format!(
        "{input}.{}",
        b64(e3.openssl_sign("sha256", false, input.as_bytes()))
    );
    assert_eq!(checks(&set, &t), (Ok(()), 1));
    let _ = std::fs::remove_file(&e3.pem_path);
}

#[test]
fn rsa_modulus_is_capped_by_max_rsa_key_bits() {
    use crate::jwks::KeyPolicy;
    // Odd moduli of the given byte length, top bit set: 4096, 4104, 8192 and 8200 bits.
    let modulus = |bytes: usize| vec![0xc5u8; bytes];
    let doc = |bytes: usize| json!({"keys": [rsa_jwk("big", &modulus(bytes), &[1, 0, 1]), p256_jwk("ec")]});
    let load = |bytes: usize, max: Option<u32>| {
        let policy = max.map_or_else(KeyPolicy::default, |m| KeyPolicy { max_rsa_bits: m });
        let set = KeySet::from_value_with(&doc(bytes), JwksOrigin::Remote, &policy).unwrap();
        set.keys.iter().any(|k| k.kid.as_deref() == Some("big"))
    };
    assert!(load(512, None), "4096 bits by default");
    assert!(!load(513, None), "4104 bits refused by default");
    assert!(!load(1024, None), "8192 bits refused by default");
    assert!(load(1024, Some(8192)), "8192 bits when configured");
    assert!(!load(1025, Some(8192)), "never above 8192");
    let skipped = KeySet::from_value(&doc(1024), JwksOrigin::Remote)
        .unwrap()
        .skipped;
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0]
            .starts_with("keys[0] (kid \"big\"): RSA modulus is larger than max_rsa_key_bits"),
        "{skipped:?}"
    );
    // The provider's setting reaches local and remote key sets.
    let local = |extra: Value| {
        let mut p = extra;
        p["local_jwks"] = json!({ "inline": doc(1024) });
        let cfg = FilterConfig::parse(config_json(p, json!([])).as_bytes()).unwrap();
        match &cfg.providers[0].keys {
            crate::config::KeySource::Local(set) => set.keys.len(),
            _ => panic!("local expected"),
        }
    };
    assert_eq!(local(json!({})), 1);
    assert_eq!(local(json!({"max_rsa_key_bits": 8192})), 2);
    let remote = |max: Option<u32>| {
        let mut provider = json!({"remote_jwks": {"cluster": "idp", "path": "/jwks"}});
        if let Some(m) = max {
            provider["max_rsa_key_bits"] = json!(m);
        }
        let cfg = json!({"providers": {"idp": provider}});
        let cfg = Arc::new(FilterConfig::parse(cfg.to_string().as_bytes()).unwrap());
        let shared = MemShared::default();
        let mut w = WorkerKeys::new(cfg, "jwt");
        let body = json!({"keys": [rsa_jwk("big", &modulus(1024), &[1, 0, 1]),
            rsa_jwk("e-17", &modulus(256), &[17]), p256_jwk("ec")]});
        w.on_fetch_result(&shared, 0, Some(body.to_string().as_bytes()), NOW * 1000)
    };
    use crate::keystore::FetchResult;
    match remote(None) {
        FetchResult::Accepted { skipped } => {
            assert_eq!(skipped.len(), 2, "{skipped:?}");
            assert!(skipped[0].contains("kid \"big\""));
            assert!(skipped[1].contains("kid \"e-17\"") && skipped[1].contains("exponent"));
        }
        other => panic!("{other:?}"),
    }
    match remote(Some(8192)) {
        FetchResult::Accepted { skipped } => assert_eq!(skipped.len(), 1, "{skipped:?}"),
        other => panic!("{other:?}"),
    }
}
