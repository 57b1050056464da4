//! Opaque tokens (RFC 7662 introspection) through jwt_auth.wasm in a real Envoy, against an
//! introspection endpoint on 127.0.0.1 that records every call: active and inactive answers,
//! both cached (the endpoint's call count does not move on repeats), 100 concurrent requests
//! with one new token making one call, an endpoint that fails or is slow answered with the
//! configured status before the endpoint would have answered, and the client secret never in
//! Envoy's log.

use crate::prelude::*;

const SECRET: &str = "introspection-secret-1f9c";

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tokens_are_introspected_cached_and_coalesced() {
    let endpoint = idp::start().await;
    let up = Upstream::echo().await.unwrap();
    let envoy = idp::gateway(&endpoint, &up).await;

    let r = idp::get(&envoy, "active-1").await;
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-user-id").as_deref(), Some("user-active-1"));
    assert_eq!(seen.header("x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(seen.header("authorization"), None, "the token leaves");
    assert_eq!(idp::calls(&endpoint, "active-1"), 1);
    for _ in 0..5 {
        assert_eq!(idp::get(&envoy, "active-1").await.status(), 200);
    }
    assert_eq!(idp::calls(&endpoint, "active-1"), 1, "cached");

    let r = idp::get(&envoy, "inactive-1").await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "token is not active");
    assert_eq!(idp::get(&envoy, "inactive-1").await.status(), 401);
    assert_eq!(idp::calls(&endpoint, "inactive-1"), 1, "negative cache");

    let r = idp::get(&envoy, "noscope-1").await;
    assert_eq!(r.status(), 403, "held to required_scopes as a JWT is");

    // 100 concurrent requests with one new token: one call.
    let all =
        futures_util::future::join_all((0..100).map(|_| idp::get(&envoy, "active-burst"))).await;
    assert!(all.iter().all(|r| r.status() == 200));
    assert_eq!(idp::calls(&endpoint, "active-burst"), 1);

    // Down: the configured 401 at once; slow: the same, well before the endpoint answers.
    let r = idp::get(&envoy, "down-1").await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"],
        "token introspection is temporarily unavailable"
    );
    let started = Instant::now();
    let r = idp::get(&envoy, "slow-1").await;
    assert_eq!(r.status(), 401);
    assert!(
        started.elapsed() < idp::SLOW,
        "answered before the endpoint would have"
    );

    let calls: Vec<_> = endpoint.requests();
    // base64("edge:{SECRET}"), computed apart.
    let basic = "ZWRnZTppbnRyb3NwZWN0aW9uLXNlY3JldC0xZjlj";
    assert!(calls
        .iter()
        .all(|c| c.header("authorization") == Some(format!("Basic {basic}"))));
    assert!(!envoy.log().contains(SECRET), "the secret is never logged");
    assert!(!envoy.log().contains("active-burst"), "nor the token");
}

#[cfg(test)]
mod idp {
    use super::*;

    pub const SLOW: Duration = Duration::from_secs(5);

    /// The endpoint: answers by the token's prefix (`active-`, `inactive-`, `noscope-`,
    /// `down-`, `slow-`).
    pub async fn start() -> Upstream {
        Upstream::start(|r| {
            let body = String::from_utf8_lossy(&r.body).to_string();
            let token = token_of(&body);
            let exp = now() + 600;
            let active = |scope: &str| {
                gateway_tests::upstream::Reply::json(
                    200,
                    &json!({"active": true, "sub": format!("user-{token}"), "tenant": "acme",
                            "aud": "api", "scope": scope, "exp": exp, "client_id": "spa"}),
                )
            };
            if token.starts_with("active-") {
                active("orders:read")
            } else if token.starts_with("noscope-") {
                active("profile")
            } else if token.starts_with("down-") {
                gateway_tests::upstream::Reply::text(503, "down")
            } else if token.starts_with("slow-") {
                active("orders:read").delay(SLOW)
            } else {
                gateway_tests::upstream::Reply::json(200, &json!({"active": false}))
            }
        })
        .await
        .unwrap()
    }

    fn token_of(form: &str) -> String {
        form.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .unwrap_or("")
            .to_string()
    }

    /// Calls the endpoint got for `token`.
    pub fn calls(endpoint: &Upstream, token: &str) -> usize {
        endpoint
            .requests()
            .iter()
            .filter(|r| token_of(&String::from_utf8_lossy(&r.body)) == token)
            .count()
    }

    pub async fn gateway(endpoint: &Upstream, up: &Upstream) -> Envoy {
        let config = json!({
            "realm": "api",
            "providers": {"opaque": {
                "introspection": {"cluster": "jwks", "uri": "http://idp.test/oauth2/introspect",
                                  "client_id": "edge", "client_secret": SECRET,
                                  "timeout": "0.5s", "cache_duration": "60s",
                                  "negative_cache_duration": "30s"},
                "audiences": ["api"],
                "tenant_claim": "tenant",
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "opaque"},
                       "required_scopes": ["orders:read"]}],
        });
        crate::support::builder(endpoint.port(), up.port(), &config)
            .start()
            .await
            .unwrap()
    }

    pub async fn get(envoy: &Envoy, token: &str) -> reqwest::Response {
        client()
            .get(envoy.url("main", "/orders"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
    }
}
