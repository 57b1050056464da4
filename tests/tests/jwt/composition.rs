//! jwt_auth with its neighbours: revocation through the real service, the tenant through tenant_cache_key; bad config refused.

use crate::prelude::*;
use crate::support::{assert_denied, builder_with_revocation, config, get, with_jti};

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
