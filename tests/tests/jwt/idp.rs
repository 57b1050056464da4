//! The JWKS endpoint: key rotation and unknown-kid storms, one fetch for every worker, IdP outages, garbage and slow IdPs.

use crate::prelude::*;
use crate::support::{assert_denied, builder, config, gateway, get, with_jti};

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
