//! The jwt_auth filter (dist/jwt_auth.wasm) in a real Envoy, with a real JWKS endpoint the test
//! controls: the attack corpus, header hygiene, key rotation, fetch storms, IdP outages, garbage
//! and slow IdPs. Keys and tokens are made at test time (`jwt_auth::testing`).

use futures_util::StreamExt;
use gateway_tests::envoy::{client, custom, Envoy, EnvoyBuilder};
use gateway_tests::jwks::{JwksReply, JwksServer};
use gateway_tests::ratelimit::RateLimitService;
use gateway_tests::redis::RedisServer;
use gateway_tests::tools::now;
use gateway_tests::upstream::Upstream;
use gateway_tests::{chain, tools, wait};
use jwt_auth::outcome::Denial;
use jwt_auth::testing::{attack_corpus, claims, jwks, keys, sign, token};
use jwt_auth::verify::VerifyError;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const REALM: &str = "api";

/// The provider the corpus is written for, its keys from the `jwks` cluster; `remote` entries
/// override the `remote_jwks` defaults.
fn config(remote: Value) -> Value {
    let mut remote_jwks = json!({
        "cluster": "jwks",
        "uri": "http://idp.test/.well-known/jwks.json",
        "timeout": "2s",
    });
    for (k, v) in remote.as_object().unwrap() {
        remote_jwks[k] = v.clone();
    }
    json!({
        "realm": REALM,
        "providers": {"idp": {
            "issuer": "https://idp",
            "audiences": ["api"],
            "require_expiration": true,
            "max_lifetime": "3600s",
            "remote_jwks": remote_jwks,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"],
            "claim_to_headers": [{"header_name": "x-org-id", "claim_name": "org.id"}],
            "tenant_claim": "tenant",
        }},
        "rules": [
            {"match": {"path_prefix": "/public"}},
            {"match": {"path_prefix": "/orders", "methods": ["POST"]},
             "requires": {"provider_name": "idp"}, "required_scopes": ["orders:write"]},
            {"match": {"path_prefix": "/"}, "requires": {"provider_name": "idp"}},
        ],
    })
}

async fn gateway(jwks: &JwksServer, up: &Upstream, config: &Value) -> Envoy {
    builder(jwks.port(), up.port(), config)
        .start()
        .await
        .unwrap()
}

fn builder(jwks_port: u16, upstream_port: u16, config: &Value) -> EnvoyBuilder {
    builder_with_revocation(jwks_port, upstream_port, 9, config)
}

fn builder_with_revocation(
    jwks_port: u16,
    upstream_port: u16,
    revocation_port: u16,
    config: &Value,
) -> EnvoyBuilder {
    EnvoyBuilder::from_repo_file("jwt", "tests/envoy/jwt.yaml")
        .unwrap()
        .var(
            "HTTP_FILTERS",
            chain::with_router(vec![chain::wasm("jwt_auth", config).unwrap()]),
        )
        .var("UPSTREAM_PORT", upstream_port)
        .var("JWKS_PORT", jwks_port)
        .var("REVOCATION_PORT", revocation_port)
}

/// A valid token for `alg` (under its usual kid) with its own `jti`: distinct tokens keep the
/// verified-token cache out of the way, and revocation is by `jti`.
fn with_jti(alg: &str, t0: u64, jti: &str) -> String {
    let mut c = claims(t0);
    c["jti"] = json!(jti);
    sign(
        &json!({"alg": alg, "kid": jwt_auth::testing::kid_for(alg)}),
        &c,
    )
}

async fn get(envoy: &Envoy, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(envoy.url("main", path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

/// Asserts the RFC 6750 refusal for `expect`: status, `WWW-Authenticate`, JSON body.
async fn assert_denied(resp: reqwest::Response, expect: &Denial, what: &str) {
    assert_eq!(u32::from(resp.status().as_u16()), expect.status(), "{what}");
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        www.as_deref(),
        Some(expect.www_authenticate(REALM).as_str()),
        "{what}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], expect.error_code(), "{what}: {body}");
    assert_eq!(body["message"], expect.description, "{what}: {body}");
    assert!(
        !body["request_id"].as_str().unwrap_or("").is_empty(),
        "{what}: the request id is echoed: {body}"
    );
}

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

    // Forged, without kid: each costs two checks (not 64) and is refused.
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
    let bound = 1 + 2 + 2 * forgeries;
    let spent = envoy
        .wait_stat_at_least(&custom(jwt_auth::metrics::SIGNATURE_CHECKS), bound)
        .await
        .unwrap();
    assert_eq!(spent, bound, "signature checks beyond the per-token bound");
}

#[tokio::test]
async fn key_rotation_and_unknown_kid_storm() {
    let k = keys();
    let idp = JwksServer::start(json!({"keys": [k.rsa.jwk("rsa-1")]}))
        .await
        .unwrap();
    let up = Upstream::echo().await.unwrap();
    let envoy = gateway(&idp, &up, &config(json!({}))).await;
    let t0 = now();
    assert_eq!(
        get(&envoy, "/x", Some(&token("RS256", t0))).await.status(),
        200
    );
    assert_eq!(idp.fetches(), 1);

    // The IdP rotates: a token under the new kid waits for one refetch, then passes.
    idp.set(JwksReply::Keys(
        json!({"keys": [k.rsa.jwk("rsa-1"), k.rsa2.jwk("rsa-2")]}),
    ));
    let header = json!({"alg": "RS256", "kid": "rsa-2"});
    let input = format!(
        "{}.{}",
        jwt_auth::testing::b64(header.to_string()),
        jwt_auth::testing::b64(claims(t0).to_string())
    );
    let sig = k.rsa2.openssl_sign("sha256", false, input.as_bytes());
    let rotated = format!("{input}.{}", jwt_auth::testing::b64(sig));
    assert_eq!(get(&envoy, "/x", Some(&rotated)).await.status(), 200);
    assert_eq!(idp.fetches(), 2, "exactly one refetch for the new kid");

    // 1,000 tokens with random kids: each refused, and the refetch budget (one per provider
    // per 30 s) already spent on the rotation means not one more fetch.
    let storm: Vec<String> = (0..1000)
        .map(|i| {
            sign(
                &json!({"alg": "ES256", "kid": format!("random-{i}-{}", t0)}),
                &claims(t0),
            )
        })
        .collect();
    let statuses: Vec<u16> = futures_util::stream::iter(storm.iter())
        .map(|t| {
            let envoy = &envoy;
            async move { get(envoy, "/x", Some(t)).await.status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(statuses.len(), 1000);
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(idp.fetches(), 2, "an unknown-kid storm caused fetches");
    envoy
        .wait_stat_at_least(&custom(&jwt_auth::metrics::denied("unknown_kid")), 1000)
        .await
        .unwrap();
    assert_eq!(get(&envoy, "/x", Some(&rotated)).await.status(), 200);
}

#[tokio::test]
async fn one_jwks_fetch_serves_every_worker() {
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up = Upstream::echo().await.unwrap();
    let envoy = builder(idp.port(), up.port(), &config(json!({})))
        .concurrency(2)
        .start()
        .await
        .unwrap();
    let t0 = now();
    // A new connection per request, so the kernel spreads them over both workers' listeners.
    for i in 0..40 {
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let t = with_jti("ES256", t0, &format!("worker-{i}"));
        let resp = fresh
            .get(envoy.url("main", "/x"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
    }
    for worker in ["worker_0", "worker_1"] {
        // Envoy names listener stats by the configured address (port 0).
        let stat = format!("listener.127.0.0.1_0.{worker}.downstream_cx_total");
        let n = envoy.stat(&stat).await.unwrap().unwrap_or(0);
        assert!(n > 0, "{stat} = {n}: the test needs both workers serving");
    }
    assert_eq!(idp.fetches(), 1, "one JWKS fetch serves both workers");
}

#[tokio::test]
async fn idp_outage_garbage_and_max_stale() {
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up = Upstream::echo().await.unwrap();
    let cfg = config(json!({"cache_duration": "2s", "max_stale": "8s", "timeout": "1s"}));
    let envoy = gateway(&idp, &up, &cfg).await;
    let t0 = now();
    let valid = token("ES256", t0);
    // A distinct token per request keeps the verified-token cache out of the way: each
    // request needs the keys.
    let fresh = |i: u64| with_jti("ES256", t0, &format!("outage-{i}"));
    assert_eq!(get(&envoy, "/x", Some(&valid)).await.status(), 200);
    let first = idp.fetch_times()[0];

    // The IdP goes down for longer than cache_duration: the last good keys keep serving.
    idp.set(JwksReply::Status(503));
    envoy
        .wait_stat_at_least(&custom(jwt_auth::metrics::JWKS_FETCH_FAILURE), 1)
        .await
        .unwrap();
    wait::until(
        "cache_duration to pass",
        Duration::from_secs(10),
        || async { Ok((first.elapsed() > Duration::from_millis(2500)).then_some(())) },
    )
    .await
    .unwrap();
    assert_eq!(get(&envoy, "/x", Some(&fresh(1))).await.status(), 200);

    // Garbage from the IdP never replaces good keys, and is logged and counted.
    for garbage in [
        "<html>maintenance</html>",
        r#"{"keys": 42}"#,
        r#"{"keys": []}"#,
    ] {
        let failures = envoy
            .stat(&custom(jwt_auth::metrics::JWKS_FETCH_FAILURE))
            .await
            .unwrap()
            .unwrap_or(0);
        idp.set(JwksReply::Body(garbage.to_string()));
        envoy
            .wait_stat_at_least(&custom(jwt_auth::metrics::JWKS_FETCH_FAILURE), failures + 1)
            .await
            .unwrap();
        assert!(
            first.elapsed() < Duration::from_secs(10),
            "within max_stale"
        );
        assert_eq!(
            get(&envoy, "/x", Some(&fresh(2))).await.status(),
            200,
            "{garbage}"
        );
    }
    envoy
        .wait_log("JWKS fetch rejected, keeping the last good keys")
        .await
        .unwrap();

    // Past cache_duration + max_stale the keys are gone: refuse rather than trust them.
    idp.set(JwksReply::Status(503));
    wait::until("max_stale to pass", Duration::from_secs(15), || async {
        Ok((first.elapsed() > Duration::from_millis(10_500)).then_some(()))
    })
    .await
    .unwrap();
    assert_denied(
        get(&envoy, "/x", Some(&fresh(3))).await,
        &Denial::KEYS_UNAVAILABLE,
        "past max_stale",
    )
    .await;

    // The IdP recovers: traffic recovers by itself.
    idp.set(JwksReply::Keys(jwks(false)));
    let mut i = 10;
    wait::until("recovery", Duration::from_secs(30), || {
        i += 1;
        let t = fresh(i);
        let envoy = &envoy;
        async move { Ok((get(envoy, "/x", Some(&t)).await.status() == 200).then_some(())) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn slow_idp_does_not_hold_requests() {
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up = Upstream::echo().await.unwrap();
    let cfg = config(json!({"cache_duration": "2s", "timeout": "5s"}));
    let envoy = gateway(&idp, &up, &cfg).await;
    let t0 = now();
    assert_eq!(
        get(&envoy, "/x", Some(&token("EdDSA", t0))).await.status(),
        200
    );
    // Every later answer takes 4 s; a routine refresh starts before the keys expire.
    let hold = Duration::from_secs(4);
    idp.set_delay(hold);
    wait::until("a background refresh", Duration::from_secs(10), || async {
        Ok((idp.fetches() >= 2).then_some(()))
    })
    .await
    .unwrap();
    let refresh_started = idp.fetch_times()[1];
    for i in 0..5 {
        let t = with_jti("EdDSA", t0, &format!("slow-{i}"));
        assert_eq!(get(&envoy, "/x", Some(&t)).await.status(), 200);
    }
    assert!(
        refresh_started.elapsed() < hold,
        "the requests were answered while the refresh was still held by the IdP"
    );
    // And a request whose keys are unknown (new kid) gets its answer within the fetch timeout.
    let started = Instant::now();
    let unknown = sign(&json!({"alg": "EdDSA", "kid": "ed-2"}), &claims(t0));
    let resp = get(&envoy, "/x", Some(&unknown)).await;
    assert_denied(resp, &Denial::from(VerifyError::UnknownKid), "new kid").await;
    assert!(started.elapsed() < Duration::from_secs(12));
}

#[tokio::test]
async fn revocation_through_the_real_service() {
    let redis = RedisServer::start().unwrap();
    let mut rls = RateLimitService::start(&redis.url(), "domain: edge\n", &[])
        .await
        .unwrap();
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up = Upstream::echo().await.unwrap();
    let mut cfg = config(json!({}));
    cfg["providers"]["idp"]["revocation"] = json!({"cluster": "revocation", "sync_interval": "1s"});
    let envoy = builder_with_revocation(idp.port(), up.port(), rls.grpc_port(), &cfg)
        .start()
        .await
        .unwrap();
    let t0 = now();
    let (victim, bystander) = (
        with_jti("ES256", t0, "stolen-1"),
        with_jti("ES256", t0, "fine-1"),
    );
    assert_eq!(get(&envoy, "/x", Some(&victim)).await.status(), 200);
    assert_eq!(get(&envoy, "/x", Some(&bystander)).await.status(), 200);
    envoy
        .wait_stat_at_least(&custom(jwt_auth::metrics::REVOCATION_SYNC_SUCCESS), 1)
        .await
        .unwrap();

    // An operator revokes the stolen token (HTTP on the service's loopback admin port, with
    // the operator's bearer token).
    let resp = client()
        .post(rls.http_url("/revocations"))
        .bearer_auth(rls.revocation_token().unwrap())
        .json(&json!({"issuer": "https://idp", "jti": "stolen-1", "expires_at": t0 + 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let revoked_at = Instant::now();
    // Within one sync period (1 s) plus the tick that picks it up, the cached token is refused.
    let refused = wait::until(
        "the revocation to reach Envoy",
        Duration::from_secs(5),
        || async {
            let resp = get(&envoy, "/x", Some(&victim)).await;
            Ok((resp.status() == 401).then_some(resp))
        },
    )
    .await
    .unwrap();
    assert_denied(refused, &Denial::REVOKED, "revoked").await;
    eprintln!("revocation took effect after {:?}", revoked_at.elapsed());
    assert_eq!(get(&envoy, "/x", Some(&bystander)).await.status(), 200);
    envoy
        .wait_stat_at_least(&custom(&jwt_auth::metrics::denied("revoked")), 1)
        .await
        .unwrap();
    assert_eq!(
        envoy
            .stat(&custom(jwt_auth::metrics::REVOCATION_ENTRIES))
            .await
            .unwrap(),
        Some(1)
    );

    // The service goes away: the last list stays in force (fail open for the rest).
    rls.terminate(Duration::from_secs(5));
    envoy
        .wait_stat_at_least(&custom(jwt_auth::metrics::REVOCATION_SYNC_FAILURE), 1)
        .await
        .unwrap();
    assert_eq!(get(&envoy, "/x", Some(&victim)).await.status(), 401);
    assert_eq!(get(&envoy, "/x", Some(&bystander)).await.status(), 200);
}

/// jwt_auth in front of tenant_cache_key: the tenant comes from the verified token's claim
/// (through a header jwt_auth owns), never from anything the client sends.
#[tokio::test]
async fn tenant_from_the_verified_claim_through_tenant_cache_key() {
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up = Upstream::echo().await.unwrap();
    let mut jwt = config(json!({}));
    jwt["providers"]["idp"]["tenant_header"] = json!("x-jwt-tenant");
    let tenant = json!({
        "stage": "both",
        "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
        "unresolved": { "action": "anonymous" },
    });
    let envoy = EnvoyBuilder::from_repo_file("jwt-tenant", "tests/envoy/jwt.yaml")
        .unwrap()
        .var(
            "HTTP_FILTERS",
            chain::with_router(vec![
                chain::wasm("jwt_auth", &jwt).unwrap(),
                chain::wasm("tenant_cache_key", &tenant).unwrap(),
            ]),
        )
        .var("UPSTREAM_PORT", up.port())
        .var("JWKS_PORT", idp.port())
        .var("REVOCATION_PORT", 9)
        .start()
        .await
        .unwrap();
    let t0 = now();
    // A verified token of tenant acme; the client forges both tenant headers.
    let resp = client()
        .get(envoy.url("main", "/orders"))
        .bearer_auth(token("ES256", t0))
        .header("x-tenant-id", "evil")
        .header("x-jwt-tenant", "evil")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header_all("x-tenant-id"), ["acme"]);
    // No token on a public route: the forged claim header is gone before tenant resolution.
    let resp = client()
        .get(envoy.url("main", "/public/info"))
        .header("x-tenant-id", "evil")
        .header("x-jwt-tenant", "evil")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.last();
    assert_eq!(got.header("x-tenant-id"), None, "anonymous, not 'evil'");
    assert_eq!(got.header("x-jwt-tenant"), None);
}

#[tokio::test]
async fn bad_config_is_refused_with_its_reason() {
    let wasm = tools::wasm("jwt_auth").unwrap().display().to_string();
    let cases = [
        (
            json!({"providers": {"idp": {"issuer": "https://idp"}}}).to_string(),
            "providers.idp",
        ),
        (
            json!({"providers": {"idp": {"issuer": "x", "remote_jwks": {"cluster": "jwks", "uri": "http://i/j", "timeout": "soon"}}}}).to_string(),
            "providers.idp.remote_jwks.timeout",
        ),
        ("{not json".to_string(), "refusing to start"),
    ];
    for (config, expected) in cases {
        let b = EnvoyBuilder::from_repo_file("jwt-bad-config", "tests/envoy/jwt.yaml")
            .unwrap()
            .var(
                "HTTP_FILTERS",
                chain::with_router(vec![chain::wasm_at("jwt_auth", &wasm, &config)]),
            )
            .var("UPSTREAM_PORT", 9)
            .var("JWKS_PORT", 9)
            .var("REVOCATION_PORT", 9);
        let (status, log) = b
            .start_expecting_exit(Duration::from_secs(20))
            .await
            .unwrap();
        assert!(!status.success(), "Envoy accepted {config}");
        assert!(
            log.contains("jwt_auth: refusing to start") && log.contains(expected),
            "expected {expected:?} in Envoy's log:\n{log}"
        );
    }
}
