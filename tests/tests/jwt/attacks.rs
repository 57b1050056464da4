//! Attacks: the corpus and header hygiene, bad identities and a kid-less forgery against a large JWKS.

use crate::prelude::*;
use crate::support::{assert_denied, config, gateway, get};

#[tokio::test]
async fn attack_corpus_and_header_hygiene_through_envoy() {
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up = Upstream::echo().await.unwrap();
    let envoy = gateway(&idp, &up, &config(json!({}))).await;
    let t0 = now();

    // Every algorithm the JWKS carries verifies; the upstream gets the claims, not the token,
    // and never a client's copy of a header the filter owns.
    for alg in ["RS256", "PS384", "ES256", "ES384", "EdDSA"] {
        let resp = client()
            .get(envoy.url("main", "/things"))
            .bearer_auth(token(alg, t0))
            .header("x-user-id", "admin")
            .header("x-tenant-id", "other-tenant")
            .header("x-org-id", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{alg}");
        let got = up.last();
        assert_eq!(got.header_all("x-user-id"), ["user-1"], "{alg}");
        assert_eq!(got.header_all("x-tenant-id"), ["acme"], "{alg}");
        assert_eq!(got.header_all("x-org-id"), ["7"], "{alg}");
        assert_eq!(got.header("authorization"), None, "{alg}: token forwarded");
    }

    // The corpus: each refused with its own description, none reaching the upstream.
    let before = up.hits();
    let corpus = attack_corpus(t0);
    for case in &corpus {
        let resp = get(&envoy, "/things", Some(&case.token)).await;
        assert_denied(resp, &case.expect, &case.name).await;
    }
    assert_eq!(up.hits(), before, "a refused request reached the upstream");
    envoy
        .wait_stat_at_least(&custom(&jwt_auth::metrics::denied("bad_signature")), 2)
        .await
        .unwrap();
    envoy
        .wait_stat_at_least(&custom(&jwt_auth::metrics::denied("unknown_kid")), 6)
        .await
        .unwrap();

    // Missing and empty credentials, the scheme's case, ambiguity.
    assert_denied(
        get(&envoy, "/things", None).await,
        &Denial::MISSING,
        "missing",
    )
    .await;
    let resp = client()
        .get(envoy.url("main", "/things"))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "empty bearer");
    let valid = token("RS256", t0);
    let resp = client()
        .get(envoy.url("main", "/things"))
        .header("authorization", format!("bearer {valid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the auth scheme is case-insensitive");
    let resp = client()
        .get(envoy.url("main", "/things"))
        .header("authorization", format!("Bearer {valid}"))
        .header("authorization", format!("Bearer {valid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "two Authorization headers");
    let resp = client()
        .get(envoy.url("main", &format!("/things?access_token={valid}")))
        .bearer_auth(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "token in header and query at once");
    let resp = get(
        &envoy,
        &format!("/things?page=2&access_token={valid}"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200, "token in the query alone");
    assert_eq!(
        up.last().path,
        "/things?page=2",
        "the token is removed from the query"
    );

    // Public routes and CORS preflights pass unauthenticated, still sanitized.
    let resp = client()
        .get(envoy.url("main", "/public/info"))
        .header("x-user-id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-user-id"), None, "spoofed x-user-id");
    let resp = client()
        .request(reqwest::Method::OPTIONS, envoy.url("main", "/things"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "CORS preflight");

    // Valid token, missing scope: 403 insufficient_scope.
    let resp = client()
        .post(envoy.url("main", "/orders"))
        .bearer_auth(&valid)
        .send()
        .await
        .unwrap();
    assert_denied(
        resp,
        &Denial::from(jwt_auth::authz::AuthzError::MissingScope),
        "scope",
    )
    .await;
    let mut c = claims(t0);
    c["scope"] = json!("orders:read orders:write");
    let writer = sign(&json!({"alg": "ES256", "kid": "ec-1"}), &c);
    let resp = client()
        .post(envoy.url("main", "/orders"))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The repeated token comes from the verified-token cache.
    for _ in 0..3 {
        assert_eq!(get(&envoy, "/things", Some(&valid)).await.status(), 200);
    }
    envoy
        .wait_stat_at_least(&custom(jwt_auth::metrics::TOKEN_CACHE_HIT), 3)
        .await
        .unwrap();
    assert_eq!(
        idp.fetches(),
        2,
        "the initial fetch plus one refetch for all the corpus's unknown kids"
    );
}

/// Findings 10-12 through Envoy: a verified token whose `sub` is padded or missing is refused
/// 401 `invalid_claim` (never admitted without an identity), and a forged token without a `kid`
/// against a JWKS of 64 RSA keys is refused after at most two signature checks, counted by
/// `jwt_auth.signature_checks`. A key with a disallowed exponent is refused at load, logged by
/// kid and counted.
#[tokio::test]
async fn bad_identity_and_kidless_forgery_against_a_large_jwks() {
    use jwt_auth::testing::b64;
    let k = keys();
    let mut weak = k.rsa.jwk("weak-e");
    weak["e"] = json!(b64([0x01, 0x00, 0x03])); // 65539
    let mut list = vec![k.rsa.jwk("rsa-1"), weak];
    list.extend((2..64).map(|i| k.rsa.jwk(&format!("bulk-{i}"))));
    assert_eq!(list.len(), 64, "the JWKS maximum");
    let idp = JwksServer::start(json!({ "keys": list })).await.unwrap();
    let up = Upstream::echo().await.unwrap();
    let envoy = gateway(&idp, &up, &config(json!({}))).await;
    let t0 = now();

    // A good token passes with its identity: one signature check.
    let resp = get(&envoy, "/things", Some(&token("RS256", t0))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header_all("x-user-id"), ["user-1"]);
    envoy
        .wait_stat_at_least(&custom(jwt_auth::metrics::JWKS_KEYS_SKIPPED), 1)
        .await
        .unwrap();
    let log = envoy
        .wait_log("JWKS keys refused: keys[1] (kid \"weak-e\"): RSA exponent must be 3 or 65537")
        .await
        .unwrap();
    assert!(
        !log.contains(k.rsa.jwk("x")["n"].as_str().unwrap()),
        "key material logged"
    );

    // Genuine signatures, unusable identities: one check each, then 401 invalid_claim.
    let hits = up.hits();
    let invalid_claim = Denial::from(jwt_auth::claims::ClaimError::InvalidIdentity);
    for (what, sub) in [("padded sub", Some(" user-1")), ("missing sub", None)] {
        let mut c = claims(t0);
        match sub {
            Some(s) => c["sub"] = json!(s),
            None => {
                c.as_object_mut().unwrap().remove("sub");
            }
        }
        let t = sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &c);
        let resp = client()
            .get(envoy.url("main", "/things"))
            .bearer_auth(&t)
            .header("x-user-id", "user-1")
            .send()
            .await
            .unwrap();
        assert_denied(resp, &invalid_claim, what).await;
    }

    // Forged, without kid: each costs three checks (not 64) and is refused.
    let forgeries = 5u64;
    for i in 0..forgeries {
        let mut c = claims(t0);
        c["jti"] = json!(format!("forged-{i}"));
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "RS256"}).to_string()),
            b64(c.to_string())
        );
        let forged = format!("{input}.{}", b64(k.rsa2.rs256(input.as_bytes())));
        let resp = get(&envoy, "/things", Some(&forged)).await;
        assert_denied(
            resp,
            &Denial::from(VerifyError::KidRequired),
            "kid-less forgery",
        )
        .await;
    }
    assert_eq!(up.hits(), hits, "a refused request reached the upstream");
    envoy
        .wait_stat_at_least(&custom(&jwt_auth::metrics::denied("invalid_claim")), 2)
        .await
        .unwrap();
    envoy
        .wait_stat_at_least(
            &custom(&jwt_auth::metrics::denied("kid_required")),
            forgeries,
        )
        .await
        .unwrap();
    // The counter is flushed whole on the filter's tick: once it reaches the bound it holds
    // every check these requests made.
    let per_forgery = u64::try_from(jwt_auth::verify::MAX_CANDIDATES).unwrap();
    let bound = 1 + 2 + per_forgery * forgeries;
    let spent = envoy
        .wait_stat_at_least(&custom(jwt_auth::metrics::SIGNATURE_CHECKS), bound)
        .await
        .unwrap();
    assert_eq!(spent, bound, "signature checks beyond the per-token bound");
}
