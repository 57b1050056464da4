//! Rate limits and load shedding: per-tenant and per-consumer 429s, a limits reload under traffic, low-priority routes shed first.

use crate::prelude::*;

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
        .wait_stat_at_least(
            &gateway_tests::envoy::custom(ratelimit::metrics::REFUSED),
            2,
        )
        .await
        .unwrap();
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

/// A guarantee of the config, not a convention: every route that reaches an upstream has a
/// name the ratelimit stage limits (it keys descriptors by the matched route's name), and every
/// name the stage lists is a route of the table. Read from envoy/gateway.yaml itself.
#[test]
fn every_upstream_route_is_limited_by_name() {
    let config = gateway_tests::gateway_config::GatewayConfig::load();
    let limited = config.limited_route_names();
    assert!(!limited.is_empty(), "the ratelimit stage limits no route");
    let mut seen = HashSet::new();
    for route in config.routes() {
        if route.is_direct() {
            continue;
        }
        let name = route
            .name()
            .unwrap_or_else(|| panic!("{}: an upstream route without a name", route.describe()));
        assert!(
            limited.contains(&name),
            "{}: route {name} is not in the ratelimit stage's routes",
            route.describe()
        );
        seen.insert(name);
    }
    for name in &limited {
        assert!(
            seen.contains(name),
            "the stage limits {name}, which no route is called"
        );
    }
}
