//! Global rate limiting end to end: real Envoy (`envoy.filters.http.ratelimit`, template
//! `tests/envoy/ratelimit.yaml`) calling the real `dist/ratelimit-service` over gRPC, with
//! buckets in a real Redis, in front of an in-process upstream.
//!
//! Limits are per hour so that no token refills while a test runs (a token bucket of 3/hour
//! refills one token every 20 minutes): the counts below are exact.

use gateway_tests::envoy::{client, Envoy, EnvoyBuilder};
use gateway_tests::ratelimit::{limit_of, RateLimitService};
use gateway_tests::redis::RedisServer;
use gateway_tests::upstream::{Reply, Upstream};
use gateway_tests::wait;
use std::time::{Duration, Instant};

const CONFIG: &str = "\
domain: edge
descriptors:
  - key: consumer
    rate_limit: { unit: hour, requests_per_unit: 3 }
  - key: route
    value: limited
    rate_limit: { unit: hour, requests_per_unit: 5 }
  - key: route
    value: shadow
    shadow_mode: true
    rate_limit: { unit: hour, requests_per_unit: 2 }
";

async fn envoy_for(rls: &RateLimitService, up: &Upstream, failure_mode_deny: bool) -> Envoy {
    EnvoyBuilder::from_repo_file("ratelimit", "tests/envoy/ratelimit.yaml")
        .unwrap()
        .var("RLS_PORT", rls.grpc_port())
        .var("UPSTREAM_PORT", up.port())
        .var("FAILURE_MODE_DENY", failure_mode_deny)
        .start()
        .await
        .unwrap()
}

async fn upstream() -> Upstream {
    Upstream::start(|_| Reply::text(200, "upstream"))
        .await
        .unwrap()
}

/// Redis, the service (with `extra_args`), an upstream and an Envoy that denies on RLS failure.
async fn stack(extra_args: &[&str]) -> (RedisServer, RateLimitService, Upstream, Envoy) {
    let redis = RedisServer::start().unwrap();
    let rls = RateLimitService::start(&redis.url(), CONFIG, extra_args)
        .await
        .unwrap();
    rls.wait_ready(Duration::from_secs(10)).await.unwrap();
    let up = upstream().await;
    let envoy = envoy_for(&rls, &up, true).await;
    (redis, rls, up, envoy)
}

async fn get(envoy: &Envoy, path: &str, consumer: Option<&str>) -> reqwest::Response {
    let mut req = client().get(envoy.url("main", path));
    if let Some(c) = consumer {
        req = req.header("x-consumer", c);
    }
    req.send().await.unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

fn number(resp: &reqwest::Response, name: &str) -> u64 {
    let value = header(resp, name).unwrap_or_else(|| {
        panic!(
            "no {name} header; status {}, headers {:?}",
            resp.status(),
            resp.headers()
        )
    });
    value
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}: {value:?} is not a number"))
}

/// Sends `limit` requests for `consumer` that must pass, then one that must get 429.
async fn exhaust(envoy: &Envoy, consumer: &str, limit: u64) -> reqwest::Response {
    for i in 1..=limit {
        let resp = get(envoy, "/api", Some(consumer)).await;
        assert_eq!(
            resp.status(),
            200,
            "request {i} of {consumer} within {limit}"
        );
        assert_eq!(
            limit_of(&resp),
            Some(limit),
            "x-ratelimit-limit of request {i}"
        );
        assert_eq!(
            number(&resp, "x-ratelimit-remaining"),
            limit - i,
            "remaining after request {i}"
        );
    }
    let resp = get(envoy, "/api", Some(consumer)).await;
    assert_eq!(resp.status(), 429, "request {} of {consumer}", limit + 1);
    resp
}

#[tokio::test]
async fn per_consumer_limit_answers_429_with_headers_and_spares_other_consumers() {
    let (_redis, rls, up, envoy) = stack(&[]).await;

    let denied = exhaust(&envoy, "alice", 3).await;
    let retry_after = number(&denied, "retry-after");
    assert!(
        (1..=3600).contains(&retry_after),
        "retry-after {retry_after} within one hour"
    );
    assert_eq!(limit_of(&denied), Some(3), "x-ratelimit-limit on the 429");
    assert_eq!(number(&denied, "x-ratelimit-remaining"), 0);
    let reset = number(&denied, "x-ratelimit-reset");
    assert!((1..=3600).contains(&reset), "x-ratelimit-reset {reset}");
    assert_eq!(
        up.hits(),
        3,
        "the denied request never reached the upstream"
    );

    // Still denied (possibly from the service's local over-limit cache).
    assert_eq!(get(&envoy, "/api", Some("alice")).await.status(), 429);

    let bob = get(&envoy, "/api", Some("bob")).await;
    assert_eq!(bob.status(), 200, "another consumer is unaffected");
    assert_eq!(number(&bob, "x-ratelimit-remaining"), 2);

    // No x-consumer header: no descriptor, Envoy does not even ask.
    assert_eq!(get(&envoy, "/api", None).await.status(), 200);
    assert_eq!(up.hits(), 5);

    rls.wait_metric_at_least(
        "ratelimit_over_limit_total",
        &[("domain", "edge"), ("descriptor", "consumer")],
        2.0,
    )
    .await
    .unwrap();
    envoy
        .wait_stat_at_least("cluster.upstream.ratelimit.over_limit", 2)
        .await
        .unwrap();
}

#[tokio::test]
async fn route_generic_key_limits_across_consumers() {
    let (_redis, _rls, up, envoy) = stack(&[]).await;
    for i in 0..5 {
        let consumer = format!("c{i}");
        let resp = get(&envoy, "/limited/x", Some(&consumer)).await;
        assert_eq!(resp.status(), 200, "request {i} on /limited");
    }
    let resp = get(&envoy, "/limited/x", Some("c-new")).await;
    assert_eq!(
        resp.status(),
        429,
        "route=limited (5/hour) is shared by all consumers"
    );
    assert_eq!(
        limit_of(&resp),
        Some(5),
        "the route limit is the one exhausted"
    );
    // The consumer's own bucket was not the reason: it still has room on another route.
    assert_eq!(get(&envoy, "/api", Some("c-new")).await.status(), 200);
    assert_eq!(up.hits(), 6);
}

#[tokio::test]
async fn shadow_mode_passes_traffic_but_counts_it() {
    let (_redis, rls, up, envoy) = stack(&[]).await;
    for i in 1..=5 {
        let resp = get(&envoy, "/shadow/x", None).await;
        assert_eq!(resp.status(), 200, "shadow request {i} passes");
    }
    assert_eq!(up.hits(), 5);
    let labels = [("domain", "edge"), ("descriptor", "route_shadow")];
    let shadow = rls
        .wait_metric_at_least("ratelimit_shadow_mode_over_limit_total", &labels, 3.0)
        .await
        .unwrap();
    assert_eq!(shadow, 3.0, "requests 3..=5 were over the limit of 2");
    assert_eq!(
        rls.metric("ratelimit_hits_total", &labels).await.unwrap(),
        Some(5.0)
    );
    assert_eq!(
        rls.metric("ratelimit_over_limit_total", &labels)
            .await
            .unwrap()
            .unwrap_or(0.0),
        0.0,
        "shadow hits are not counted as enforced rejections"
    );
}

/// One request for a fresh consumer, timed.
async fn timed(envoy: &Envoy, consumer: &str) -> (u16, Duration, Option<u64>) {
    let started = Instant::now();
    let resp = get(envoy, "/api", Some(consumer)).await;
    (resp.status().as_u16(), started.elapsed(), limit_of(&resp))
}

#[tokio::test]
async fn redis_down_fails_closed_or_open_promptly_and_recovers() {
    let mut redis = RedisServer::start().unwrap();
    let rls = RateLimitService::start(&redis.url(), CONFIG, &[])
        .await
        .unwrap();
    rls.wait_ready(Duration::from_secs(10)).await.unwrap();
    let up = upstream().await;
    let deny = envoy_for(&rls, &up, true).await;
    let allow = envoy_for(&rls, &up, false).await;
    for (name, envoy) in [("deny", &deny), ("allow", &allow)] {
        let (status, _, limit) = timed(envoy, &format!("warm-{name}")).await;
        assert_eq!((status, limit), (200, Some(3)), "{name}: healthy before");
    }

    redis.stop();
    for i in 0..3 {
        let (status, took, _) = timed(&deny, &format!("down-deny-{i}")).await;
        assert_eq!(status, 500, "failure_mode_deny: true, request {i}");
        assert!(took < Duration::from_secs(2), "deny answered in {took:?}");
        let (status, took, limit) = timed(&allow, &format!("down-allow-{i}")).await;
        assert_eq!(status, 200, "failure_mode_deny: false, request {i}");
        assert_eq!(
            limit, None,
            "no limit headers without an answer from the service"
        );
        assert!(took < Duration::from_secs(2), "allow answered in {took:?}");
    }
    allow
        .wait_stat_at_least("cluster.upstream.ratelimit.failure_mode_allowed", 3)
        .await
        .unwrap();
    deny.wait_stat_at_least("cluster.upstream.ratelimit.error", 3)
        .await
        .unwrap();
    rls.wait_metric_at_least("ratelimit_redis_errors_total", &[], 1.0)
        .await
        .unwrap();

    redis.start_again().unwrap();
    let mut n = 0;
    wait::until(
        "the deny Envoy to pass traffic again",
        Duration::from_secs(20),
        || {
            n += 1;
            let consumer = format!("back-deny-{n}");
            let deny = &deny;
            async move { Ok((timed(deny, &consumer).await.0 == 200).then_some(())) }
        },
    )
    .await
    .unwrap();
    let mut n = 0;
    wait::until(
        "the allow Envoy to get limit answers again",
        Duration::from_secs(20),
        || {
            n += 1;
            let consumer = format!("back-allow-{n}");
            let allow = &allow;
            async move { Ok((timed(allow, &consumer).await.2 == Some(3)).then_some(())) }
        },
    )
    .await
    .unwrap();
    // Enforcement is back, not only connectivity.
    exhaust(&allow, "after-recovery", 3).await;
    rls.wait_ready(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn hot_reload_applies_new_limits_and_keeps_the_old_on_invalid_config() {
    let (_redis, rls, _up, envoy) = stack(&["--reload-interval", "100ms"]).await;
    let pid = rls.pid();
    exhaust(&envoy, "before", 3).await;

    rls.write_config(
        "config.yaml",
        &CONFIG.replacen("requests_per_unit: 3", "requests_per_unit: 5", 1),
    )
    .unwrap();
    let mut n = 0;
    wait::until(
        "the new limit (5) through Envoy",
        Duration::from_secs(10),
        || {
            n += 1;
            let consumer = format!("probe-{n}");
            let envoy = &envoy;
            async move { Ok((timed(envoy, &consumer).await.2 == Some(5)).then_some(())) }
        },
    )
    .await
    .unwrap();
    rls.wait_metric_at_least(
        "ratelimit_config_reloads_total",
        &[("result", "success")],
        1.0,
    )
    .await
    .unwrap();
    exhaust(&envoy, "after-reload", 5).await;

    rls.write_config(
        "config.yaml",
        "domain: edge\ndescriptors:\n  - key: consumer\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n",
    )
    .unwrap();
    rls.wait_metric_at_least(
        "ratelimit_config_reloads_total",
        &[("result", "failure")],
        1.0,
    )
    .await
    .unwrap();
    rls.wait_log("configuration change rejected").await.unwrap();
    let denied = exhaust(&envoy, "after-invalid", 5).await;
    assert_eq!(
        limit_of(&denied),
        Some(5),
        "the previous config keeps serving"
    );
    assert_eq!(rls.pid(), pid, "the same process throughout (no restart)");
}
