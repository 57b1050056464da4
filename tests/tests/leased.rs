//! Leased quotas end to end: real Envoys running `dist/ratelimit.wasm` (template
//! `tests/envoy/leased.yaml`), leasing tokens from the real `dist/ratelimit-service` over gRPC,
//! whose buckets are in a real Redis, in front of an in-process upstream.
//!
//! Limits are per hour so that no token refills while a test runs: the counts are exact.

use gateway_tests::chain;
use gateway_tests::envoy::{client, custom, Envoy, EnvoyBuilder};
use gateway_tests::ratelimit::{limit_of, RateLimitService};
use gateway_tests::redis::RedisServer;
use gateway_tests::upstream::{Reply, Upstream};
use gateway_tests::wait;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = "\
domain: edge
descriptors:
  - key: tenant
    value: acme
    rate_limit: { unit: hour, requests_per_unit: 200, mode: leased, lease_size: 20, lease_ttl: 60s }
  - key: tenant
    value: big
    rate_limit: { unit: hour, requests_per_unit: 1000000, mode: leased, lease_size: 100, lease_ttl: 60s }
  - key: tenant
    value: tiny
    rate_limit: { unit: hour, requests_per_unit: 3 }
";

/// The stage: one descriptor per request, the tenant from `x-tenant`.
fn stage(failure_mode: &str) -> serde_json::Value {
    json!({
        "cluster": "ratelimit", "domain": "edge", "timeout_ms": 500,
        "failure_mode": failure_mode, "lease_size": 100,
        "rules": [{ "descriptors": [[
            { "request_headers": { "header_name": "x-tenant", "descriptor_key": "tenant" } }
        ]] }]
    })
}

async fn envoy(rls_port: u16, up: &Upstream, failure_mode: &str, workers: usize) -> Envoy {
    let filters = chain::with_router(vec![chain::wasm("ratelimit", &stage(failure_mode)).unwrap()]);
    EnvoyBuilder::from_repo_file("leased", "tests/envoy/leased.yaml")
        .unwrap()
        .var("HTTP_FILTERS", filters)
        .var("UPSTREAM_PORT", up.port())
        .var("RLS_PORT", rls_port)
        .concurrency(workers)
        .start()
        .await
        .unwrap()
}

async fn stack() -> (RedisServer, RateLimitService, Upstream) {
    gateway_tests::ratelimit::stack(CONFIG).await.unwrap()
}

async fn get(envoy: &Envoy, tenant: &str) -> reqwest::Response {
    gateway_tests::ratelimit::get_as_tenant(envoy, tenant)
        .await
        .unwrap()
}

/// Lease calls the service answered so far.
async fn lease_calls(rls: &RateLimitService) -> f64 {
    rls.metric(LEASE_CALLS, &[]).await.unwrap().unwrap_or(0.0)
}

const LEASE_CALLS: &str = "ratelimit_lease_requests_total";

#[tokio::test]
async fn two_envoys_with_two_workers_each_never_admit_more_than_the_limit() {
    let (_redis, rls, up) = stack().await;
    let envoys = Arc::new([
        envoy(rls.grpc_port(), &up, "deny", 2).await,
        envoy(rls.grpc_port(), &up, "deny", 2).await,
    ]);
    let (admitted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..64)
        .map(|i| {
            let (envoys, admitted, refused) = (envoys.clone(), admitted.clone(), refused.clone());
            tokio::spawn(async move {
                for n in 0..8 {
                    let status = get(&envoys[(i + n) % 2], "acme").await.status().as_u16();
                    match status {
                        200 => admitted.fetch_add(1, Ordering::SeqCst),
                        429 => refused.fetch_add(1, Ordering::SeqCst),
                        other => panic!("status {other}"),
                    };
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let (admitted, refused) = (
        admitted.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
    );
    eprintln!("512 requests, limit 200: {admitted} admitted, {refused} refused");
    assert_eq!(admitted + refused, 512);
    assert!(admitted <= 200, "over-admitted: {admitted} > 200");
    // Each Envoy may end holding up to one lease it could not spend (2 x 20).
    assert!(
        admitted >= 160,
        "under-admitted beyond the bound: {admitted}"
    );
}

#[tokio::test]
async fn no_call_on_the_request_path_while_tokens_remain() {
    let (_redis, rls, up) = stack().await;
    let envoy = envoy(rls.grpc_port(), &up, "deny", 2).await;
    let before = lease_calls(&rls).await;
    let sent = 10_000u64;
    let next = Arc::new(AtomicU64::new(0));
    let envoy = Arc::new(envoy);
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (envoy, next) = (envoy.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < sent {
                    assert_eq!(get(&envoy, "big").await.status(), 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let calls = lease_calls(&rls).await - before;
    let bound = (sent as f64 / 100.0).ceil() + 8.0;
    eprintln!("{sent} requests, lease size 100: {calls} lease calls (bound {bound})");
    assert!(calls <= bound, "{calls} lease calls for {sent} requests");
}

#[tokio::test]
async fn a_tiny_exact_limit_refuses_the_fourth_request_with_its_limit() {
    let (_redis, rls, up) = stack().await;
    let envoy = envoy(rls.grpc_port(), &up, "deny", 1).await;
    for i in 0..3 {
        let resp = get(&envoy, "tiny").await;
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(limit_of(&resp), Some(3), "x-ratelimit-limit of request {i}");
    }
    let denied = get(&envoy, "tiny").await;
    assert_eq!(denied.status(), 429);
    let header = |n: &str| {
        denied
            .headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("x-ratelimit-limit").as_deref(), Some("3, 3;w=3600"));
    assert_eq!(header("x-ratelimit-remaining").as_deref(), Some("0"));
    let retry: u64 = header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "retry-after {retry}");
    let body: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
}

#[tokio::test]
async fn a_killed_service_is_the_failure_mode_within_the_timeout_and_comes_back_by_itself() {
    let (redis, mut rls, up) = stack().await;
    let (grpc, http) = (rls.grpc_port(), rls.http_port());
    let envoy = envoy(grpc, &up, "deny", 1).await;
    assert_eq!(get(&envoy, "acme").await.status(), 200);
    rls.terminate(Duration::from_secs(5));
    // The pool drains, then every request is answered 503 within the stage's timeout.
    let mut saw_503 = false;
    for _ in 0..60 {
        let started = Instant::now();
        let status = get(&envoy, "acme").await.status().as_u16();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered in time"
        );
        assert!(status == 200 || status == 503, "status {status}");
        saw_503 |= status == 503;
    }
    assert!(
        saw_503,
        "a drained pool with the service down is the failure mode (deny)"
    );
    envoy
        .wait_stat_at_least(&custom(ratelimit::metrics::FAILURE_MODE), 1)
        .await
        .unwrap();
    // The service comes back on the same ports: leases resume, no Envoy restart.
    let rls = RateLimitService::builder(&redis.url())
        .config("edge.yaml", CONFIG)
        .ports(grpc, http)
        .start()
        .await
        .unwrap();
    rls.wait_ready(Duration::from_secs(10)).await.unwrap();
    wait::until("admitted again", Duration::from_secs(10), || async {
        Ok((get(&envoy, "acme").await.status() == 200).then_some(()))
    })
    .await
    .unwrap();
}

/// Envoy's own ratelimit filter in front of the same service: the exact path to compare with.
async fn exact_path_envoy(rls_port: u16, up: &Upstream) -> Envoy {
    EnvoyBuilder::from_repo_file("exact-path", "tests/envoy/ratelimit.yaml")
        .unwrap()
        .var("RLS_PORT", rls_port)
        .var("UPSTREAM_PORT", up.port())
        .var("FAILURE_MODE_DENY", true)
        .start()
        .await
        .unwrap()
}

fn header_of(resp: &reqwest::Response, name: &str) -> Option<String> {
    (resp.headers().get(name)).map(|v| v.to_str().unwrap_or("").to_string())
}

/// The same limit (30 an hour) once leased (lease size 10) behind the stage and once exact
/// behind Envoy's ratelimit filter: every answer carries the same X-RateLimit-Limit and the
/// same X-RateLimit-Remaining (one Envoy, one worker: what the pool holds plus the bucket's
/// remainder is exactly what the exact path reports), and the 31st is a 429 with the same
/// headers and a Retry-After within a few seconds of the exact path's.
#[tokio::test]
async fn leased_answers_carry_the_headers_the_exact_path_sends() {
    const LIMITS: &str = "\
domain: edge
descriptors:
  - key: consumer
    value: leased
    rate_limit: { unit: hour, requests_per_unit: 30, mode: leased, lease_size: 10, lease_ttl: 60s }
  - key: consumer
    value: exact
    rate_limit: { unit: hour, requests_per_unit: 30 }
";
    let redis = RedisServer::start().unwrap();
    let rls = RateLimitService::start(&redis.url(), LIMITS, &[])
        .await
        .unwrap();
    rls.wait_ready(Duration::from_secs(10)).await.unwrap();
    let up = Upstream::start(|_| Reply::text(200, "upstream"))
        .await
        .unwrap();
    let config = json!({
        "cluster": "ratelimit", "domain": "edge", "timeout_ms": 500, "lease_size": 10,
        "rules": [{ "descriptors": [[
            { "request_headers": { "header_name": "x-consumer", "descriptor_key": "consumer" } }
        ]] }]
    });
    let filters = chain::with_router(vec![chain::wasm("ratelimit", &config).unwrap()]);
    let leased = EnvoyBuilder::from_repo_file("leased", "tests/envoy/leased.yaml")
        .unwrap()
        .var("HTTP_FILTERS", filters)
        .var("UPSTREAM_PORT", up.port())
        .var("RLS_PORT", rls.grpc_port())
        .start()
        .await
        .unwrap();
    let exact = exact_path_envoy(rls.grpc_port(), &up).await;
    let send = |envoy: &Envoy, consumer: &str| {
        let req = client()
            .get(envoy.url("main", "/orders"))
            .header("x-consumer", consumer);
        async move { req.send().await.unwrap() }
    };
    for k in 1..=31u64 {
        let l = send(&leased, "leased").await;
        let e = send(&exact, "exact").await;
        assert_eq!(l.status(), e.status(), "request {k}");
        for name in ["x-ratelimit-limit", "x-ratelimit-remaining"] {
            assert_eq!(
                header_of(&l, name),
                header_of(&e, name),
                "request {k}: {name}"
            );
        }
        if k <= 30 {
            assert_eq!(l.status(), 200, "request {k}");
            assert_eq!(
                header_of(&l, "x-ratelimit-remaining"),
                Some((30 - k).to_string())
            );
        } else {
            assert_eq!(l.status(), 429);
            let retry = |r: &reqwest::Response| -> i64 {
                header_of(r, "retry-after").unwrap().parse().unwrap()
            };
            let (lr, er) = (retry(&l), retry(&e));
            assert!(
                (lr - er).abs() <= 5,
                "retry-after leased {lr} vs exact {er}"
            );
        }
    }
}

/// A limit lowered in the service's config while tokens are held: the held tokens stay good
/// until their lease lifetime (1 s) ends; every lease after the reload follows the new limit.
#[tokio::test]
async fn a_lowered_limit_applies_to_every_lease_after_the_reload() {
    let limits = |n: u32, lease: u32| {
        format!(
            "domain: edge\ndescriptors:\n  - key: tenant\n    value: acme\n    rate_limit: \
             {{ unit: hour, requests_per_unit: {n}, mode: leased, lease_size: {lease}, \
             lease_ttl: 1s }}\n"
        )
    };
    let redis = RedisServer::start().unwrap();
    let rls = RateLimitService::start(
        &redis.url(),
        &limits(1000, 10),
        &["--reload-interval", "100ms"],
    )
    .await
    .unwrap();
    rls.wait_ready(Duration::from_secs(10)).await.unwrap();
    let up = Upstream::start(|_| Reply::text(200, "upstream"))
        .await
        .unwrap();
    let envoy = envoy(rls.grpc_port(), &up, "deny", 1).await;
    for _ in 0..5 {
        assert_eq!(get(&envoy, "acme").await.status(), 200);
    }
    rls.write_config("config.yaml", &limits(3, 2)).unwrap();
    rls.wait_metric_at_least(
        "ratelimit_config_reloads_total",
        &[("result", "success")],
        1.0,
    )
    .await
    .unwrap();
    // At most the tokens held at the reload and the new bucket's 3 pass. A pool holds at most
    // a lease and a half: at its low water mark (5) a refill of 10 goes out at once. Once the
    // held tokens' lifetime is over, only the new limit counts.
    let started = Instant::now();
    let mut admitted = 0;
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(3) {
        last = get(&envoy, "acme").await.status().as_u16();
        assert!(last == 200 || last == 429, "status {last}");
        admitted += u32::from(last == 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        admitted <= 15 + 3,
        "{admitted} admitted after lowering the limit to 3"
    );
    assert_eq!(last, 429, "the new limit is in force");
}
