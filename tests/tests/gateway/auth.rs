//! Authentication and authorization at the gateway: 401 for missing or bad tokens, 403 for missing scopes.

use crate::prelude::*;

#[tokio::test]
async fn missing_or_bad_token_is_401_and_missing_scope_is_403() {
    let gw = Gateway::start(Opts::default()).await;
    let c = client();
    let resp = c.get(gw.url("/api/users/1")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "no token");
    assert!(header(&resp, "www-authenticate")
        .unwrap()
        .starts_with("Bearer realm=\"edgegate\""));
    let resp = c
        .get(gw.url("/api/users/1"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "garbage token");
    // A valid signature from the wrong issuer.
    let mut foreign = claims(now());
    foreign["iss"] = json!("https://elsewhere");
    let resp = c
        .get(gw.url("/api/users/1"))
        .bearer_auth(sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &foreign))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "foreign issuer");
    assert!(
        api_requests(&gw.users).is_empty(),
        "a refused request got through"
    );

    // Writing orders needs orders:write, by every way that reaches the orders service: the
    // canary route, the versioned routes and the orders host.
    for (path, host) in [
        ("/api/orders", None),
        ("/api/orders/7", None),
        ("/api/v1/orders", None),
        ("/api/v2/orders/7", None),
        ("/orders/7", Some("orders.api.localhost")),
        ("/anything", Some("orders.api.localhost:8080")),
        ("/api/v0/orders/7", Some("orders.api.localhost")),
    ] {
        let mut req = gw.post(path, "orders:read");
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let (status, body) = answer(req).await;
        assert_eq!(status, 403, "POST {path} host {host:?}: {body}");
        assert_eq!(body["error"], "insufficient_scope");
    }
    // A host no virtual host takes (its port is not a number) matches no route: Envoy's JSON
    // 404, which the filters leave alone (they decide by the route, and there is none).
    let req = gw
        .post("/orders/7", "orders:read")
        .header("host", "orders.api.localhost:x");
    let (status, body) = answer(req).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // Any method but GET/HEAD/OPTIONS is a write, not only the four usual ones.
    let (status, _) = answer(
        client()
            .request(
                reqwest::Method::from_bytes(b"PURGE").unwrap(),
                gw.url("/api/orders/7"),
            )
            .bearer_auth(token("user-1", "acme", "orders:read")),
    )
    .await;
    assert_eq!(status, 403, "PURGE with a read-only token");
    // The orders host has no public path: /api/v0 there is orders', and needs a token.
    let (status, body) = answer(
        client()
            .delete(gw.url("/api/v0/x"))
            .header("host", "orders.api.localhost"),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let writes = |u: &Upstream| {
        api_requests(u)
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    assert_eq!(writes(&gw.orders_v1) + writes(&gw.orders_v2), 0);
    let (status, body) = answer(gw.post("/api/orders", "orders:read orders:write")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "POST");
    assert_eq!(writes(&gw.orders_v1) + writes(&gw.orders_v2), 1);
    let (status, body) = answer(
        gw.post("/orders/7", "orders:write")
            .header("host", "orders.api.localhost"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(writes(&gw.orders_v1) + writes(&gw.orders_v2), 2);
    // Reading needs only a valid token.
    assert_eq!(served(gw.get("/api/users/1")).await.0, "users");

    // A valid token without a usable tenant claim is refused: with no tenant it would pass
    // every per-tenant rate limit. The public /api/v0 still answers 410 without a token.
    let users_before = api_requests(&gw.users).len();
    for tenant in [None, Some("x".repeat(65)), Some("evil@tenant".into())] {
        let mut c = claims(now());
        c["iss"] = json!(ISSUER);
        c["sub"] = json!("user-3");
        c["scope"] = json!("orders:read");
        match &tenant {
            Some(t) => c["tenant"] = json!(t),
            None => {
                c.as_object_mut().unwrap().remove("tenant");
            }
        }
        let t = sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c);
        let (status, body) = answer(client().get(gw.url("/api/users/1")).bearer_auth(t)).await;
        // A missing tenant claim is jwt_auth's 401 invalid_claim (a required identity claim);
        // a present one the tenant stage cannot use is its 403.
        let expected = if tenant.is_none() { 401 } else { 403 };
        assert_eq!(status, expected, "tenant {tenant:?}: {body}");
        assert!(body["error"].is_string(), "a JSON answer: {body}");
    }
    assert_eq!(api_requests(&gw.users).len(), users_before);
    assert_eq!(
        answer(client().get(gw.url("/api/v0/orders/1"))).await.0,
        410
    );
}
