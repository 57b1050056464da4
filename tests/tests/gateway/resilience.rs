//! Upstream failures: 502/503 when a service is down, outlier ejection, circuit breakers, timeouts, retries, graceful drain.

use crate::prelude::*;

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
        // ejects; tests/tests/security/ checks that).
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
