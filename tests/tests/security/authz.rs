//! Authorization: methods are case-sensitive, and unusable identity claims are refused, not dropped.

use crate::prelude::*;

/// Finding 5: methods are case-sensitive. HTTP/2 lets a client send `get`; with a read-only
/// token that must not pass as GET (the read rule): it falls to the strictest rule and is
/// refused, and the orders service never sees it.
#[tokio::test]
async fn lower_case_methods_do_not_pass_as_get() {
    let gw = Gateway::start(Opts::default()).await;
    let port = gw.envoy.port("gateway");
    // Over HTTP/2 the host is the URL's authority: both names resolve to the gateway.
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("orders.api.localhost", loopback)
        .resolve("gateway.localhost", loopback)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let reader = token("user-1", "acme", "orders:read");
    let before = api_requests(&gw.orders_v1).len() + api_requests(&gw.orders_v2).len();
    for method in ["get", "Get", "gET", "head"] {
        for (host, path) in [
            ("gateway.localhost", "/api/orders/1"),
            ("orders.api.localhost", "/orders/1"),
        ] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let resp = h2
                .request(m, format!("http://{host}:{port}{path}"))
                .bearer_auth(&reader)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                status == 403 || status == 400,
                "{method} {host}{path} with a read-only token: {status}"
            );
        }
    }
    // The same token reads with GET.
    let resp = h2
        .get(gw.url("/api/orders/1"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let after = api_requests(&gw.orders_v1).len() + api_requests(&gw.orders_v2).len();
    assert_eq!(after, before + 1, "only the GET reached the orders service");
}

/// Findings 10 and 11: a token whose `sub` or `org.id` is missing, empty, not a string, padded,
/// or carries a comma, a control character or non-ASCII is refused (401 `invalid_claim`) by the
/// gateway as configured — never admitted without an identity (which would also escape the
/// per-consumer limit) and never forwarded raw for an upstream to trim into someone else's.
#[tokio::test]
async fn unusable_identity_claims_are_refused_not_dropped() {
    let gw = Gateway::start(Opts::default()).await;
    let base = || {
        let mut c = jwt_auth::testing::claims(now());
        c["iss"] = json!("https://idp.edgegate.localhost");
        c["tenant"] = json!("acme");
        c["scope"] = json!("orders:read");
        c
    };
    let bad_values = [
        None,
        Some(json!("")),
        Some(json!(" alice")),
        Some(json!("alice\t")),
        Some(json!("7,99")),
        Some(json!("al\u{1}ice")),
        Some(json!("älice")),
        Some(json!(["alice"])),
        Some(json!({"id": "alice"})),
        Some(json!(true)),
    ];
    let before = api_requests(&gw.users).len();
    for claim in ["sub", "org"] {
        for value in &bad_values {
            let mut c = base();
            let target = if claim == "sub" {
                c.as_object_mut().unwrap()
            } else {
                c["org"].as_object_mut().unwrap()
            };
            let key = if claim == "sub" { "sub" } else { "id" };
            match value {
                None => {
                    target.remove(key);
                }
                Some(v) => {
                    target.insert(key.to_string(), v.clone());
                }
            }
            let t =
                jwt_auth::testing::sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c);
            let (status, body) = answer(client().get(gw.url("/api/users/1")).bearer_auth(t)).await;
            assert_eq!(status, 401, "{claim} = {value:?}: {body}");
            assert_eq!(
                body["error"], "invalid_token",
                "{claim} = {value:?}: {body}"
            );
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("identity claim"),
                "{claim} = {value:?}: {body}"
            );
        }
    }
    assert_eq!(
        api_requests(&gw.users).len(),
        before,
        "a refused token reached users"
    );
    // Counted under the reason invalid_claim, one per token.
    let refused = 2 * bad_values.len() as u64;
    gw.envoy
        .wait_stat_at_least(
            &custom(&jwt_auth::metrics::denied("invalid_claim")),
            refused,
        )
        .await
        .unwrap();
    // A numeric sub is not a user id either; a numeric org id is its decimal text.
    let mut c = base();
    c["sub"] = json!(42);
    let t = jwt_auth::testing::sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c);
    assert_eq!(
        answer(client().get(gw.url("/api/users/1")).bearer_auth(t))
            .await
            .0,
        401
    );
    let mut c = base();
    c["sub"] = json!("user-9");
    c["org"] = json!({"id": 12});
    let t = jwt_auth::testing::sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c);
    assert_eq!(
        served(client().get(gw.url("/api/users/1")).bearer_auth(t))
            .await
            .0,
        "users"
    );
    let got = last(&gw.users);
    assert_eq!(got.header("x-user-id").as_deref(), Some("user-9"));
    assert_eq!(got.header("x-org-id").as_deref(), Some("12"));
}
