//! The reference gateway (`envoy/gateway.yaml`) end to end: real Envoy with the jwt_auth and
//! transform wasm filters, a JWKS endpoint, real Redis and the real ratelimit-service, and
//! in-process upstreams for orders v1/v2, users and products. Every failure path the design
//! documents name gets its status here, through the shipped config and not a test copy of it;
//! the only values a test changes are the two timeouts (placeholders) so the suite stays fast.

use futures_util::StreamExt;
use gateway_tests::gateway::*;
use gateway_tests::upstream::{Recorded, Reply, Upstream};
use gateway_tests::wait;
use jwt_auth::testing::{claims, sign};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
        ("/orders/7", Some("orders.api.localhost:x")),
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

#[tokio::test]
async fn tenant_or_consumer_over_its_limit_gets_429_with_retry_after() {
    let gw = Gateway::start(Opts::default()).await;
    let tiny = token("user-9", "tiny", "orders:read");
    for i in 1..=3u64 {
        let resp = client()
            .get(gw.url("/api/products/1"))
            .bearer_auth(&tiny)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i} of 3");
        assert_eq!(
            header(&resp, "x-ratelimit-remaining").as_deref(),
            Some((3 - i).to_string().as_str())
        );
    }
    // The tenant's limit counts across routes.
    let resp = client()
        .get(gw.url("/api/users/1"))
        .bearer_auth(&tiny)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = header(&resp, "retry-after")
        .expect("retry-after on the 429")
        .parse()
        .unwrap();
    assert!(
        (1..=3600).contains(&retry_after),
        "retry-after {retry_after}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(api_requests(&gw.products).len(), 3);
    assert!(api_requests(&gw.users).is_empty(), "the 429 reached users");
    // Another tenant is unaffected.
    let resp = gw.get("/api/users/1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-ratelimit-remaining").as_deref(),
        Some("999999")
    );

    // Per consumer: user `greedy` of tenant acme has 2, the rest of acme is unaffected.
    let greedy = token("greedy", "acme", "orders:read");
    let statuses = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let resp = client()
                .get(gw.url("/api/users/1"))
                .bearer_auth(&greedy)
                .send()
                .await
                .unwrap();
            v.push(resp.status().as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 429], "consumer greedy");
    assert_eq!(
        answer(gw.get("/api/users/1")).await.0,
        200,
        "user-1 of acme"
    );
    gw.envoy
        .wait_stat_at_least("cluster.users.ratelimit.over_limit", 2)
        .await
        .unwrap();
}

/// A TCP proxy in front of an upstream that can be switched off: it then refuses new
/// connections and cuts the open ones, as a crashed service would.
struct Switch {
    port: u16,
    accept: tokio::task::JoinHandle<()>,
    kill: tokio::sync::watch::Sender<bool>,
}

impl Switch {
    async fn start(target: SocketAddr) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (kill, rx) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Switch { port, accept, kill }
    }

    fn off(&self) {
        self.accept.abort();
        let _ = self.kill.send(true);
    }
}

#[tokio::test]
async fn upstream_down_is_502_then_503_once_health_checks_take_it_out() {
    let users = upstream(service("users")).await;
    let switch = Switch::start(users.addr()).await;
    let gw = Gateway::start(Opts {
        users_port: Some(switch.port),
        ..Opts::default()
    })
    .await;
    assert_eq!(served(gw.get("/api/users/1")).await.0, "users");
    gw.envoy
        .wait_stat_at_least("cluster.users.health_check.success", 1)
        .await
        .unwrap();

    switch.off();
    let started = Instant::now();
    let (status, body) = answer(gw.get("/api/users/1")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "bad_gateway", "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Still up elsewhere: other services answer.
    assert_eq!(served(gw.get("/api/products/1")).await.0, "products");

    // Health checks (and outlier detection) take the host out; then the answer is 503.
    gw.envoy
        .wait_stat_at_least("cluster.users.health_check.failure", 2)
        .await
        .unwrap();
    wait::until("no healthy users host", Duration::from_secs(10), || async {
        Ok((gw.envoy.stat("cluster.users.membership_healthy").await? == Some(0)).then_some(()))
    })
    .await
    .unwrap();
    // The workers see the new host set shortly after the main thread's stats: until then the
    // answer is still 502.
    let body = wait::until("503 from the gateway", Duration::from_secs(5), || async {
        let (status, body) = answer(gw.get("/api/users/1")).await;
        match status {
            503 => Ok(Some(body)),
            502 => Ok(None),
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    })
    .await
    .unwrap();
    assert!(body["flags"].as_str().unwrap().contains("UH"), "{body}");
}

#[tokio::test]
async fn consecutive_gateway_failures_eject_the_host_and_the_circuit_answers_503() {
    let gw = Gateway::start(Opts {
        // The host itself failing: 503 (a 500 is a handler's error on one request and never
        // ejects; tests/tests/security.rs checks that).
        users: Arc::new(|_: &Recorded| Reply::json(503, &json!({"error": "overloaded"}))),
        ..Opts::default()
    })
    .await;
    // POST: not retried, so each request is exactly one upstream failure.
    for i in 0..5 {
        let resp = client()
            .post(gw.url("/api/users"))
            .bearer_auth(token("user-1", "acme", ""))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "request {i}");
    }
    assert_eq!(api_requests(&gw.users).len(), 5);
    gw.envoy
        .wait_stat_at_least(
            "cluster.users.outlier_detection.ejections_enforced_consecutive_gateway_failure",
            1,
        )
        .await
        .unwrap();
    // The ejection reaches the worker's host set right after the stat: poll until the
    // circuit answers (Envoy's JSON 503, not the host's own), then it stays open and sends
    // nothing upstream.
    let body = wait::until("the circuit to open", Duration::from_secs(5), || async {
        let (status, body) = answer(gw.get("/api/users/1")).await;
        Ok((status == 503 && body["error"] == "service_unavailable").then_some(body))
    })
    .await
    .unwrap();
    assert_eq!(body["error"], "service_unavailable", "{body}");
    assert!(body["flags"].as_str().unwrap().contains("UH"), "{body}");
    let hits = api_requests(&gw.users).len();
    for i in 0..5 {
        let (status, body) = answer(gw.get("/api/users/1")).await;
        assert_eq!(status, 503, "request {i} while ejected: {body}");
    }
    assert_eq!(
        api_requests(&gw.users).len(),
        hits,
        "the ejected host got traffic"
    );
    assert_eq!(
        gw.envoy
            .stat("cluster.users.outlier_detection.ejections_active")
            .await
            .unwrap(),
        Some(1)
    );
    // The other services are not affected.
    assert_eq!(served(gw.get("/api/products/1")).await.0, "products");
}

#[tokio::test]
async fn report_burst_overflows_its_circuit_breaker_with_503() {
    let slow: Handler = Arc::new(|r: &Recorded| {
        Reply::json(200, &json!({"service": "orders-v1", "path": r.path})).delay_if(
            r.path.starts_with("/orders/reports"),
            Duration::from_millis(1500),
        )
    });
    let gw = Gateway::start(Opts {
        orders_v1: slow,
        ..Opts::default()
    })
    .await;
    const N: usize = 14;
    let c = client();
    let tok = token("user-1", "acme", "orders:read");
    let burst: Vec<_> = (0..N)
        .map(|i| {
            let req = c
                .get(gw.url(&format!("/api/orders/reports/{i}")))
                .bearer_auth(&tok);
            tokio::spawn(async move {
                let started = Instant::now();
                let (status, body) = answer(req).await;
                (status, body, started.elapsed())
            })
        })
        .collect();
    let mut ok = 0;
    let mut overflow = 0;
    for task in burst {
        let (status, body, took) = task.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                overflow += 1;
                assert!(body["flags"].as_str().unwrap().contains("UO"), "{body}");
                assert!(
                    took < Duration::from_millis(1400),
                    "overflow waited {took:?}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(overflow >= 1, "no request overflowed ({ok} ok)");
    assert!(
        ok <= 8,
        "{ok} reports ran; the breakers allow 4 active + 4 pending"
    );
    assert_eq!(
        api_requests(&gw.orders_v1)
            .iter()
            .filter(|r| r.path.starts_with("/orders/reports"))
            .count(),
        ok
    );
    gw.envoy
        .wait_stat_at_least("cluster.orders_reports.upstream_rq_pending_overflow", 1)
        .await
        .unwrap();
    // Ordinary orders traffic uses its own cluster and never noticed.
    assert_eq!(served(gw.get("/api/v1/orders/1")).await.0, "orders-v1");
}

#[tokio::test]
async fn slow_upstream_times_out_with_504_without_delaying_other_routes() {
    let slow = |name: &'static str| -> Handler {
        Arc::new(move |r: &Recorded| {
            Reply::json(200, &json!({"service": name, "path": r.path}))
                .delay_if(r.path.contains("slow"), Duration::from_secs(3))
        })
    };
    let gw = Gateway::start(Opts {
        orders_v1: slow("orders-v1"),
        orders_v2: slow("orders-v2"),
        route_timeout: "1s",
        report_timeout: "5s",
        ..Opts::default()
    })
    .await;

    let started = Instant::now();
    let (status, body) = answer(gw.get("/api/orders/slow")).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "gateway_timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "504 after {took:?} with a 1 s route timeout"
    );

    // Three slow requests in flight on orders v2; users answers promptly meanwhile.
    let c = client();
    let tok = token("user-1", "acme", "orders:read");
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let req = c
                .get(gw.url("/api/orders/slow"))
                .header("x-canary", "true")
                .bearer_auth(&tok);
            tokio::spawn(async move { answer(req).await.0 })
        })
        .collect();
    gw.envoy
        .wait_stat_at_least("cluster.orders_v2.upstream_rq_active", 3)
        .await
        .unwrap();
    for i in 0..10 {
        let started = Instant::now();
        assert_eq!(served(gw.get("/api/users/1")).await.0, "users");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "users request {i} took {took:?} while orders was slow"
        );
    }
    assert_eq!(
        gw.envoy
            .stat("cluster.orders_v2.upstream_rq_active")
            .await
            .unwrap(),
        Some(3),
        "the slow requests were still in flight"
    );
    for task in in_flight {
        assert_eq!(task.await.unwrap(), 504);
    }

    // The report route has its own, longer timeout: 3 s is fine there.
    let started = Instant::now();
    let (status, body) = answer(gw.get("/api/orders/reports/slow")).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test]
async fn get_is_retried_and_post_never_is() {
    // Each path fails once with 503, then succeeds.
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let flaky: Handler = Arc::new(move |r: &Recorded| {
        let first = seen.lock().unwrap().insert(r.path.clone());
        if first {
            Reply::text(503, "warming up")
        } else {
            Reply::json(200, &json!({"service": "products", "path": r.path}))
        }
    });
    let gw = Gateway::start(Opts {
        products: flaky,
        ..Opts::default()
    })
    .await;
    let hits = |path: &str| {
        api_requests(&gw.products)
            .iter()
            .filter(|r| r.path == path)
            .count()
    };

    assert_eq!(served(gw.get("/api/products/a")).await.0, "products");
    assert_eq!(hits("/products/a"), 2, "GET: the 503 was retried once");
    gw.envoy
        .wait_stat_at_least("cluster.products.upstream_rq_retry", 1)
        .await
        .unwrap();

    let resp = gw.post("/api/products/b", "").send().await.unwrap();
    assert_eq!(
        resp.status(),
        503,
        "POST: the upstream's 503 comes back as is"
    );
    assert_eq!(hits("/products/b"), 1, "POST was retried");
    assert_eq!(
        gw.envoy
            .stat("cluster.products.upstream_rq_retry")
            .await
            .unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413() {
    const MIB: usize = 1024 * 1024;
    let gw = Gateway::start(Opts::default()).await;
    let port = gw.envoy.port("gateway");
    let uploads = || api_requests(&gw.products).len();
    // Exactly 1 MiB passes, whole, with either framing.
    assert_eq!(raw_post(port, "/api/products/up", MIB, false).await, 200);
    assert_eq!(last(&gw.products).body.len(), MIB);
    assert_eq!(raw_post(port, "/api/products/up", MIB, true).await, 200);
    assert_eq!(last(&gw.products).body.len(), MIB);
    assert_eq!(uploads(), 2);
    // One byte more is refused by declared length, at once. A chunked body is refused once what
    // Envoy has buffered before the end of the stream exceeds 1 MiB, so its cut is exact only
    // to one socket read (a final read carrying the excess and the end is not re-checked).
    assert_eq!(
        raw_post(port, "/api/products/up", MIB + 1, false).await,
        413
    );
    assert_eq!(
        raw_post(port, "/api/products/up", 4 * MIB, false).await,
        413
    );
    // Repeated: a body held behind a filter that pauses on headers (the rate-limit call) used
    // to stall here now and then, which is why the buffer filter sits early in the chain.
    for i in 0..5 {
        let status = raw_post(port, "/api/products/up", 4 * MIB, true).await;
        assert_eq!(status, 413, "chunked 4 MiB, try {i}");
    }
    assert_eq!(uploads(), 2, "an oversize body got through");
}

#[tokio::test]
async fn cors_request_ids_trace_headers_and_json_access_log() {
    let gw = Gateway::start(Opts::default()).await;
    let c = client();

    // Preflight: answered by Envoy's CORS filter, without a token, never upstream.
    let resp = c
        .request(reqwest::Method::OPTIONS, gw.url("/api/users/1"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert!(header(&resp, "access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let resp = c
        .request(reqwest::Method::OPTIONS, gw.url("/api/users/1"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    assert_eq!(
        resp.status(),
        401,
        "a preflight from an unknown origin is an unauthenticated request"
    );
    assert!(api_requests(&gw.users).is_empty());

    // A request: x-request-id generated and returned, trace headers passed through.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = gw
        .get("/api/users/42")
        .header("origin", ORIGIN)
        .header("traceparent", traceparent)
        .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
        .header("x-b3-spanid", "e457b5a2e4d86bd1")
        .header("x-b3-sampled", "1")
        .header("user-agent", "gateway-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    let request_id = header(&resp, "x-request-id").expect("x-request-id in the response");
    let got = last(&gw.users);
    assert_eq!(
        got.header("x-request-id").as_deref(),
        Some(request_id.as_str())
    );
    assert_eq!(got.header("traceparent").as_deref(), Some(traceparent));
    assert_eq!(
        got.header("x-b3-traceid").as_deref(),
        Some("80f198ee56343ba864fe8b2a57d3eff7")
    );
    assert_eq!(
        got.header("x-b3-spanid").as_deref(),
        Some("e457b5a2e4d86bd1")
    );

    // The access log line for it (Envoy flushes the file about once a second).
    let line = wait::until("the access log line", Duration::from_secs(10), || {
        let path = gw.access_log.clone();
        let id = request_id.clone();
        async move {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["request_id"] == id.as_str()))
        }
    })
    .await
    .unwrap();
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["path"], "/api/users/42", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["user_id"], "user-1", "{line}");
    assert_eq!(line["tenant"], "acme", "{line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(line["user_agent"], "gateway-test/1.0", "{line}");
    assert_eq!(line["upstream_cluster"], "users", "{line}");
    assert_eq!(line["ratelimit_remaining"], "999999", "{line}");
    assert_eq!(line["traceparent"], traceparent, "{line}");
    assert!(line["duration_ms"].is_number(), "{line}");
    assert!(
        line["upstream_ms"]
            .as_str()
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{line}"
    );

    // Prometheus stats on the admin port.
    let prom = client()
        .get(gw.envoy.admin_url("/stats/prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        prom.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"users\"}"),
        "no users request count in /stats/prometheus"
    );
}

#[tokio::test]
async fn a_graceful_drain_lets_in_flight_requests_finish_before_shutdown() {
    let slow: Handler = Arc::new(|r: &Recorded| {
        Reply::json(200, &json!({"service": "orders-v2", "path": r.path}))
            .delay(Duration::from_millis(1500))
    });
    let mut gw = Gateway::start(Opts {
        orders_v2: slow,
        envoy_args: vec!["--drain-time-s", "1", "--drain-strategy", "immediate"],
        ..Opts::default()
    })
    .await;
    let in_flight = {
        let req = gw.get("/api/orders/1").header("x-canary", "true");
        tokio::spawn(async move { served(req).await })
    };
    gw.envoy
        .wait_stat_at_least("http.gateway.downstream_rq_active", 1)
        .await
        .unwrap();
    let drain = client()
        .post(gw.envoy.admin_url("/drain_listeners?graceful"))
        .send()
        .await
        .unwrap();
    assert_eq!(drain.status(), 200);
    // The listener stops accepting once the drain time is over...
    let port = gw.envoy.port("gateway");
    wait::until(
        "the listener to close",
        Duration::from_secs(10),
        || async move {
            Ok(TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                .then_some(()))
        },
    )
    .await
    .unwrap();
    // ...and the request that was in flight still completes.
    assert_eq!(
        in_flight.await.unwrap(),
        ("orders-v2".to_string(), "/orders/1".to_string())
    );
    wait::until("no active request", Duration::from_secs(10), || async {
        Ok((gw.envoy.stat("http.gateway.downstream_rq_active").await? == Some(0)).then_some(()))
    })
    .await
    .unwrap();
    let status = gw
        .envoy
        .terminate(Duration::from_secs(10))
        .expect("Envoy exits on SIGTERM after the drain");
    assert!(status.success(), "Envoy exited with {status}");
}

#[tokio::test]
async fn rate_limit_config_reload_during_traffic_loses_no_request() {
    let gw = Gateway::start(Opts {
        rls_args: vec!["--reload-interval", "100ms"],
        ..Opts::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    // (status, x-ratelimit-limit) of every answer, in completion order.
    type Answers = Arc<Mutex<Vec<(u16, Option<u64>)>>>;
    let seen: Answers = Arc::new(Mutex::new(Vec::new()));
    let c = client();
    let tok = token("user-1", "acme", "orders:read");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen, c, tok) = (stop.clone(), seen.clone(), c.clone(), tok.clone());
            let url = gw.url("/api/products/1");
            tokio::spawn(async move {
                // Bounded: at most 5,000 requests per worker even if the test never stops it.
                for _ in 0..5000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let resp = c.get(&url).bearer_auth(&tok).send().await.unwrap();
                    let entry = (resp.status().as_u16(), limit_of(&resp));
                    seen.lock().unwrap().push(entry);
                }
            })
        })
        .collect();
    let count = || seen.lock().unwrap().len();
    wait::until(
        "traffic under the old config",
        Duration::from_secs(20),
        || async { Ok((count() >= 100).then_some(())) },
    )
    .await
    .unwrap();

    gw.rls
        .write_config(
            "config.yaml",
            &RLS_CONFIG.replacen(
                "requests_per_unit: 1000000",
                "requests_per_unit: 2000000",
                1,
            ),
        )
        .unwrap();
    wait::until(
        "the new limit in answers",
        Duration::from_secs(20),
        || async {
            let new = seen
                .lock()
                .unwrap()
                .iter()
                .any(|(_, l)| *l == Some(2_000_000));
            Ok(new.then_some(()))
        },
    )
    .await
    .unwrap();
    let at_switch = count();
    wait::until(
        "traffic under the new config",
        Duration::from_secs(20),
        || async { Ok((count() >= at_switch + 100).then_some(())) },
    )
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    gw.rls
        .wait_metric_at_least(
            "ratelimit_config_reloads_total",
            &[("result", "success")],
            1.0,
        )
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    let bad: Vec<_> = seen
        .iter()
        .filter(|(status, limit)| {
            *status != 200 || !matches!(limit, Some(1_000_000) | Some(2_000_000))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} requests failed or went unchecked by the service: {:?}",
        bad.len(),
        seen.len(),
        &bad[..bad.len().min(10)]
    );
    // Once the new config answered, the old one never did again.
    let first_new = seen
        .iter()
        .position(|(_, l)| *l == Some(2_000_000))
        .unwrap();
    let old_after = seen[first_new..]
        .iter()
        .filter(|(_, l)| *l == Some(1_000_000))
        .count();
    assert!(
        old_after <= 4,
        "{old_after} answers under the old config after the switch"
    );
    assert_eq!(api_requests(&gw.products).len(), seen.len());
    eprintln!(
        "reload under traffic: {} requests, switch at {first_new}",
        seen.len()
    );
}

#[tokio::test]
async fn tls_termination_speaks_http2_and_http11_and_h2c_in_the_clear() {
    let gw = Gateway::start(Opts::default()).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&gw.ca).unwrap()).unwrap();
    let port = gw.envoy.port("gateway_tls");
    let url = format!("https://gateway.localhost:{port}/api/users/1");
    let tls = |http1: bool, trust: bool| {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .resolve(
                "gateway.localhost",
                SocketAddr::from(([127, 0, 0, 1], port)),
            );
        if trust {
            b = b.add_root_certificate(ca.clone());
        }
        if http1 {
            b = b.http1_only();
        }
        b.build().unwrap()
    };
    let tok = token("user-1", "acme", "orders:read");

    for (http1, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let resp = tls(http1, true)
            .get(&url)
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version, "ALPN");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["service"], "users", "{version:?}");
        let got = last(&gw.users);
        assert_eq!(got.header("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(got.header("x-user-id").as_deref(), Some("user-1"));
    }
    // The same filters behind TLS: no token, 401.
    let resp = tls(false, true).get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // The certificate is the one made for this test: a client that does not trust it fails.
    assert!(tls(false, false).get(&url).send().await.is_err());

    // Cleartext HTTP/2 (prior knowledge) on the plain listener.
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2c
        .get(gw.url("/api/products/1"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        last(&gw.products).header("x-forwarded-proto").as_deref(),
        Some("http")
    );
}

/// The catalog (/api/catalog, served by products) is cached per tenant: a repeat from the same tenant is a hit (with
/// `age`), another tenant never gets the first one's entry, and a forged tenant header changes
/// nothing. Every other route skips the cache even when its upstream says the answer may be
/// cached, so retries, the canary and timeouts keep working.
#[tokio::test]
async fn catalog_is_cached_per_tenant_and_other_routes_skip_the_cache() {
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = served.clone();
    let cacheable = |name: &'static str| -> Handler {
        Arc::new(move |r: &Recorded| {
            Reply::json(200, &json!({"service": name, "path": r.path}))
                .header("cache-control", "public, max-age=60")
        })
    };
    let gw = Gateway::start(Opts {
        products: Arc::new(move |r: &Recorded| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::json(
                200,
                &json!({"service": "products", "path": r.path,
                        "tenant": r.header("x-tenant-id"), "n": n}),
            )
            // A slow item, so concurrent misses overlap.
            .delay_if(r.path.ends_with("/slow"), Duration::from_millis(300))
        }),
        orders_v1: cacheable("orders-v1"),
        orders_v2: cacheable("orders-v2"),
        ..Opts::default()
    })
    .await;
    let as_tenant = |tenant: &str| {
        client()
            .get(gw.url("/api/catalog/7"))
            .bearer_auth(token("user-1", tenant, "orders:read"))
    };
    let first = as_tenant("acme").send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "age"), None, "a miss");
    let vary = header(&first, "vary").unwrap_or_default();
    assert!(vary.to_ascii_lowercase().contains("x-tenant-id"), "{vary}");
    let cache_control = header(&first, "cache-control");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["tenant"], "acme");
    assert_eq!(
        first["path"], "/api/catalog/7",
        "no rewrite on the cached route"
    );
    // The route's lifetime, private toward the client: only the gateway's own cache (which
    // varies on the tenant) may keep it.
    assert_eq!(cache_control.as_deref(), Some("private, max-age=60"));

    // The file cache writes its entry in the background: repeat until a hit, at most 5 s.
    let hit = wait::until("acme's repeat to be a hit", Duration::from_secs(5), || {
        let req = as_tenant("acme");
        async move {
            let resp = req.send().await?;
            if header(&resp, "age").is_none() {
                return Ok(None);
            }
            Ok(Some(resp.json::<Value>().await?))
        }
    })
    .await
    .unwrap();
    assert_eq!(hit, first, "the cached body");
    let upstream_calls = served.load(Ordering::SeqCst);

    // Another tenant: its own miss and its own body, never acme's entry.
    let other: Value = as_tenant("globex")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["tenant"], "globex");
    assert_eq!(served.load(Ordering::SeqCst), upstream_calls + 1);
    // A forged tenant header is replaced by the token's tenant: acme's entry, not globex's.
    let forged = as_tenant("acme")
        .header("x-tenant-id", "globex")
        .header("x-jwt-tenant", "globex")
        .send()
        .await
        .unwrap();
    assert!(header(&forged, "age").is_some());
    let forged: Value = forged.json().await.unwrap();
    assert_eq!(forged["tenant"], "acme");
    assert_eq!(served.load(Ordering::SeqCst), upstream_calls + 1);

    // Concurrent misses for the same URL from two tenants (the upstream slow, so they overlap
    // in the cache): each tenant gets its own tenant's answer, none the other's.
    let slow = |tenant: &str| {
        let req = client().get(gw.url("/api/catalog/slow")).bearer_auth(token(
            "user-1",
            tenant,
            "orders:read",
        ));
        let tenant = tenant.to_string();
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            (tenant, body)
        }
    };
    let answers = futures_util::future::join_all(
        ["acme", "globex", "acme", "globex", "initech", "acme"].map(slow),
    )
    .await;
    for (tenant, body) in &answers {
        assert_eq!(body["tenant"], tenant.as_str(), "{tenant} got {body}");
    }

    // Orders answers "public, max-age=60", but its routes skip the cache: every GET arrives.
    let before = api_requests(&gw.orders_v1).len() + api_requests(&gw.orders_v2).len();
    for _ in 0..3 {
        let resp = gw.get("/api/orders/1").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "age"), None);
    }
    let after = api_requests(&gw.orders_v1).len() + api_requests(&gw.orders_v2).len();
    assert_eq!(after - before, 3);
}

/// A WebSocket upgrade on /api/events passes the same filters (token checked, identity headers
/// set, the token removed) and then carries bytes both ways; without a token it is a 401.
#[tokio::test]
async fn websocket_upgrade_passes_through_after_the_filters() {
    let gw = Gateway::start(Opts::default()).await;
    let port = gw.envoy.port("gateway");
    let upgrade = |auth: Option<&str>| {
        let auth = auth
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!(
            "GET /api/events/orders HTTP/1.1\r\nhost: gateway.localhost\r\nconnection: Upgrade\r\n\
             upgrade: websocket\r\nsec-websocket-version: 13\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-user-id: spoofed\r\n{auth}\r\n"
        )
    };

    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(upgrade(None).as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("http/1.1 401"), "{head}");

    let tok = token("user-1", "acme", "orders:read");
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(upgrade(Some(&tok)).as_bytes())
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    let upstream = gw.events.last_head();
    assert!(upstream.starts_with("get /events/orders "), "{upstream}");
    assert!(upstream.contains("upgrade: websocket"), "{upstream}");
    assert!(upstream.contains("x-user-id: user-1\r\n"), "{upstream}");
    assert!(!upstream.contains("spoofed"), "{upstream}");
    assert!(upstream.contains("x-tenant-id: acme\r\n"), "{upstream}");
    assert!(!upstream.contains("authorization"), "{upstream}");
    // Bytes flow both ways after the upgrade (a masked text frame; the service echoes it).
    let frame = [
        0x81u8,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    for _ in 0..3 {
        conn.write_all(&frame).await.unwrap();
        let mut echo = [0u8; 11];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, frame);
    }
}

/// gRPC through the gateway to an HTTP/2 upstream: jwt_auth's 401 reaches a gRPC client as
/// UNAUTHENTICATED, a valid token gets SERVING, and the service sees the identity headers.
#[tokio::test]
async fn grpc_route_reaches_the_http2_upstream_through_the_filters() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let gw = Gateway::start(Opts::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(gw.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    let err = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    let mut req = tonic::Request::new(HealthCheckRequest::default());
    let tok = token("user-1", "acme", "orders:read");
    req.metadata_mut()
        .insert("authorization", format!("Bearer {tok}").parse().unwrap());
    req.metadata_mut()
        .insert("x-tenant-id", "spoofed".parse().unwrap());
    let reply = client.check(req).await.unwrap().into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let seen = gw.grpc.last();
    let get = |k: &str| seen.get(k).and_then(|v| v.to_str().ok()).map(String::from);
    assert_eq!(get("x-user-id").as_deref(), Some("user-1"));
    assert_eq!(get("x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(get("authorization"), None);
}

/// Load shedding by priority: a flood of slow requests on a DEFAULT-priority route (the
/// deprecated /api/v1/orders) overflows its circuit breakers with 503, while the HIGH-priority
/// /api/orders route to the same service keeps being served.
#[tokio::test]
async fn low_priority_routes_are_shed_first_under_a_flood() {
    let slow: Handler = Arc::new(|r: &Recorded| {
        Reply::json(200, &json!({"service": "orders-v1", "path": r.path}))
            .delay_if(r.path.contains("slow"), Duration::from_secs(3))
    });
    let gw = Gateway::start(Opts {
        orders_v1: slow.clone(),
        orders_v2: slow,
        ..Opts::default()
    })
    .await;
    let h2 = h2c();
    let tok = token("user-1", "acme", "orders:read");
    // 400 at once: more than DEFAULT's 256 connections plus 64 pending.
    let flood: Vec<_> = (0..400)
        .map(|i| {
            let req = h2
                .get(gw.url(&format!("/api/v1/orders/slow-{i}")))
                .bearer_auth(&tok);
            tokio::spawn(async move { answer(req).await })
        })
        .collect();
    // The DEFAULT pool overflows (its pending queue is 64) while the slow requests hold it.
    gw.envoy
        .wait_stat_at_least("cluster.orders_v1.upstream_rq_pending_overflow", 1)
        .await
        .unwrap();
    // Meanwhile, the critical route: every request is served.
    for i in 0..20 {
        let resp = h2
            .get(gw.url(&format!("/api/orders/fast-{i}")))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "HIGH priority request {i}");
    }
    let mut shed = 0;
    let mut ok = 0;
    for task in flood {
        let (status, body) = task.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                assert_eq!(body["error"], "service_unavailable", "{body}");
                assert_eq!(body["flags"], "UO", "{body}");
                shed += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(shed > 0 && ok > 0, "{ok} served, {shed} shed");
    let overflow = gw
        .envoy
        .stat("cluster.orders_v1.upstream_rq_pending_overflow")
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(overflow, shed, "every 503 is a counted overflow");
}
