//! Envoy's native Rate Limit Quota filter (`envoy.filters.http.rate_limit_quota`, template
//! `tests/envoy/rlqs.yaml`) against the real `dist/ratelimit-service` serving RLQS from buckets
//! in a real Redis, in front of an in-process upstream.
//!
//! Envoy 1.40 reports every 5 s (whatever the config says), so these tests run for seconds:
//! the first request of a bucket opens the stream (and is refused: no assignment yet, the
//! template's fail-closed fallback); each later report gets a new grant. Limits are per hour so
//! that nothing refills while a test runs: the counts are exact.

use gateway_tests::envoy::{Envoy, EnvoyBuilder};
use gateway_tests::ratelimit::RateLimitService;
use gateway_tests::redis::RedisServer;
use gateway_tests::upstream::Upstream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = "\
domain: edge
descriptors:
  - key: tenant
    value: acme
    rate_limit: { unit: hour, requests_per_unit: 30, mode: leased, lease_size: 10, lease_ttl: 60s }
";

async fn envoy(rls: &RateLimitService, up: &Upstream, workers: usize) -> Envoy {
    EnvoyBuilder::from_repo_file("rlqs", "tests/envoy/rlqs.yaml")
        .unwrap()
        .var("UPSTREAM_PORT", up.port())
        .var("RLS_PORT", rls.grpc_port())
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

/// Sends requests for `tenant` until the first 200 (the assignment arrived), at most `within`.
async fn until_assigned(envoy: &Envoy, tenant: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if get(envoy, tenant).await.status() == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn two_envoys_sharing_a_limit_through_rlqs_never_admit_more_than_it() {
    let (_redis, rls, up) = stack().await;
    let envoys = Arc::new([envoy(&rls, &up, 2).await, envoy(&rls, &up, 2).await]);
    let (admitted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // 16 clients for 13 s: three report rounds (the first request's, then every 5 s).
    let deadline = Instant::now() + Duration::from_secs(13);
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (envoys, admitted, refused) = (envoys.clone(), admitted.clone(), refused.clone());
            tokio::spawn(async move {
                for n in 0..2_000usize {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let response = get(&envoys[(i + n) % 2], "acme").await;
                    match response.status().as_u16() {
                        200 => admitted.fetch_add(1, Ordering::SeqCst),
                        429 => refused.fetch_add(1, Ordering::SeqCst),
                        other => panic!("status {other}"),
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
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
    eprintln!("RLQS, limit 30/hour, two Envoys: {admitted} admitted, {refused} refused");
    assert!(admitted <= 30, "over-admitted: {admitted} > 30");
    // Grants are spent at once under this demand; at most the last one (10) can be left
    // unspent when the test ends.
    assert!(
        admitted >= 20,
        "under-admitted beyond one grant: {admitted}"
    );
    assert!(refused > 0);
    let reports = rls
        .metric("ratelimit_rlqs_usage_reports_total", &[("domain", "edge")])
        .await
        .unwrap()
        .unwrap_or(0.0);
    assert!(reports >= 4.0, "usage reports seen: {reports}");
}

#[tokio::test]
async fn a_refusal_is_a_json_429_and_an_unlimited_tenant_is_allowed_after_its_first_report() {
    let (_redis, rls, up) = stack().await;
    let envoy = envoy(&rls, &up, 1).await;
    // No assignment yet: the template's fail-closed fallback refuses, with its JSON body.
    let first = get(&envoy, "free").await;
    assert_eq!(first.status(), 429);
    assert_eq!(
        first.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // `free` matches no limit: the service assigns ALLOW_ALL.
    assert!(until_assigned(&envoy, "free", Duration::from_secs(5)).await);
    for _ in 0..50 {
        assert_eq!(get(&envoy, "free").await.status(), 200);
    }
    let unlimited = rls
        .metric(
            "ratelimit_lease_requests_total",
            &[("domain", "edge"), ("mode", "unlimited")],
        )
        .await
        .unwrap()
        .unwrap_or(0.0);
    assert!(unlimited >= 1.0);
}

#[tokio::test]
async fn an_exhausted_limit_is_refused_by_envoy_without_asking_per_request() {
    let (_redis, rls, up) = stack().await;
    let envoy = envoy(&rls, &up, 1).await;
    assert!(until_assigned(&envoy, "acme", Duration::from_secs(5)).await);
    // The first grant is a whole lease (10): one request spent above, nine left.
    let mut admitted = 1;
    for _ in 0..40 {
        if get(&envoy, "acme").await.status() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10, "the first assignment is one lease of 10");
    // 40 requests, one lease call: Envoy decided them all from its assignment.
    let leases = rls
        .metric("ratelimit_lease_requests_total", &[("domain", "edge")])
        .await
        .unwrap()
        .unwrap_or(0.0);
    assert!(leases <= 2.0, "lease calls: {leases}");
}

#[tokio::test]
async fn every_report_brings_a_fresh_grant_that_envoy_spends_in_full() {
    let (_redis, rls, up) = stack().await;
    let envoy = envoy(&rls, &up, 1).await;
    // Steady demand for 13 s: the grants of the reports at 0, 5 and 10 s (10 each) are all
    // spent; then the limit (30) is gone. Envoy's own carry-over rule would start every grant
    // after the first at 0 tokens: the service's DENY_ALL-then-token-bucket answer avoids it.
    let start = Instant::now();
    let mut admitted = 0;
    for _ in 0..2_000 {
        if start.elapsed() >= Duration::from_secs(13) {
            break;
        }
        if get(&envoy, "acme").await.status() == 200 {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admitted, 30, "three grants of 10 in 13 s");
    let granted = rls
        .metric(
            "ratelimit_lease_tokens_granted_total",
            &[("domain", "edge")],
        )
        .await
        .unwrap()
        .unwrap_or(0.0);
    assert_eq!(granted, 30.0);
}
