//! Routing: path, host, header and version routes, lifecycle headers, the canary split.

use crate::prelude::*;

#[tokio::test]
async fn routes_by_path_host_header_and_version_with_lifecycle_headers() {
    let gw = Gateway::start(Opts {
        users: Arc::new(|r: &Recorded| {
            Reply::json(
                200,
                &json!({"service": "users", "path": r.path, "id": 7,
                        "password_hash": "secret", "internal": {"shard": 3}}),
            )
            .header("x-powered-by", "framework")
        }),
        ..Opts::default()
    })
    .await;

    // Path prefixes, with /api stripped.
    assert_eq!(
        served(gw.get("/api/products/3?color=red")).await,
        ("products".into(), "/products/3?color=red".into())
    );
    let (svc, path) = served(gw.get("/api/orders/5")).await;
    assert!(svc == "orders-v1" || svc == "orders-v2", "{svc}");
    assert_eq!(path, "/orders/5");
    // Header routing.
    assert_eq!(
        served(gw.get("/api/orders/5").header("x-canary", "true")).await,
        ("orders-v2".into(), "/orders/5".into())
    );
    // Host routing: orders.api.localhost goes to orders whatever the path, not rewritten.
    let (svc, path) = served(gw.get("/orders/9").header("host", "orders.api.localhost")).await;
    assert!(svc.starts_with("orders-"), "{svc}");
    assert_eq!(path, "/orders/9");
    assert_eq!(
        served(
            gw.get("/orders/9")
                .header("host", "orders.api.localhost")
                .header("x-canary", "true")
        )
        .await
        .0,
        "orders-v2"
    );
    // A prefix is a path segment: /api/ordersX is no orders route.
    let (status, body) = answer(gw.get("/api/ordersX")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found", "a JSON answer: {body}");

    // API versions: v2 plain, v1 deprecated with Deprecation, Sunset and a successor link.
    let v2 = gw.get("/api/v2/orders/1").send().await.unwrap();
    assert_eq!(v2.status(), 200);
    assert_eq!(header(&v2, "deprecation"), None);
    let body: Value = v2.json().await.unwrap();
    assert_eq!(
        (body["service"].as_str(), body["path"].as_str()),
        (Some("orders-v2"), Some("/orders/1"))
    );
    let v1 = gw.get("/api/v1/orders/1").send().await.unwrap();
    assert_eq!(v1.status(), 200);
    assert_eq!(header(&v1, "deprecation").as_deref(), Some("@1767225600"));
    assert_eq!(
        header(&v1, "sunset").as_deref(),
        Some("Thu, 01 Jul 2027 00:00:00 GMT")
    );
    assert!(header(&v1, "link").unwrap().contains("/api/v2/orders"));
    let body: Value = v1.json().await.unwrap();
    assert_eq!(
        (body["service"].as_str(), body["path"].as_str()),
        (Some("orders-v1"), Some("/orders/1"))
    );

    // The sunset version: 410 with a JSON migration message, no token needed, no upstream.
    let before: usize = [&gw.orders_v1, &gw.orders_v2]
        .iter()
        .map(|u| api_requests(u).len())
        .sum();
    let gone = client()
        .get(gw.url("/api/v0/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    assert_eq!(
        header(&gone, "content-type").as_deref(),
        Some("application/json")
    );
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"], "gone");
    assert_eq!(body["successor"], "/api/v2");
    let after: usize = [&gw.orders_v1, &gw.orders_v2]
        .iter()
        .map(|u| api_requests(u).len())
        .sum();
    assert_eq!(before, after, "the sunset route reached an upstream");

    // What the upstream gets from the filters: identity headers, no token; what the client
    // gets back: internal fields stripped, framework headers removed, a request id.
    let resp = gw.get("/api/users/7").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-powered-by"), None);
    assert_eq!(header(&resp, "x-gateway").as_deref(), Some("edgegate"));
    assert!(header(&resp, "x-request-id").is_some_and(|v| !v.is_empty()));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 7);
    assert!(body.get("password_hash").is_none(), "{body}");
    assert!(body.get("internal").is_none(), "{body}");
    let got = last(&gw.users);
    assert_eq!(got.path, "/users/7");
    assert_eq!(got.header("x-user-id").as_deref(), Some("user-1"));
    assert_eq!(got.header("x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(got.header("x-org-id").as_deref(), Some("7"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.header("x-gateway-route").as_deref(), Some("users"));
    // The strip holds for every method, and the client cannot ask for a body the filter
    // could not strip: Accept-Encoding never reaches the users service.
    for method in ["PUT", "PATCH", "DELETE"] {
        let resp = client()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                gw.url("/api/users/7"),
            )
            .bearer_auth(token("user-1", "acme", "orders:read"))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["id"], 7, "{method}");
        assert!(body.get("password_hash").is_none(), "{method}: {body}");
        assert_eq!(last(&gw.users).header("accept-encoding"), None, "{method}");
    }
}

#[tokio::test]
async fn canary_split_is_95_to_5_within_3_points_over_2000_requests() {
    let gw = Gateway::start(Opts::default()).await;
    const N: usize = 2000;
    let tok = token("user-1", "acme", "orders:read");
    let url = gw.url("/api/orders/1");
    let c = client();
    let results: Vec<String> = futures_util::stream::iter(0..N)
        .map(|_| {
            let req = c.get(&url).bearer_auth(&tok);
            async move { served(req).await.0 }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let v2 = results.iter().filter(|s| *s == "orders-v2").count();
    let v1 = results.iter().filter(|s| *s == "orders-v1").count();
    assert_eq!(v1 + v2, N, "every request reached an orders version");
    let share = v2 as f64 * 100.0 / N as f64;
    assert!(
        (2.0..=8.0).contains(&share),
        "orders v2 got {share:.2} % ({v2} of {N}); want 5 +- 3"
    );
    assert_eq!(api_requests(&gw.orders_v2).len(), v2);
    eprintln!("canary: v1 {v1}, v2 {v2} ({share:.2} %)");
}
