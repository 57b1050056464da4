//! The aggregate stage (dist/aggregate.wasm) in a real Envoy (`tests/envoy/aggregate.yaml`) in
//! front of a scripted upstream: merged answers, parallel legs, partial and failed
//! aggregations, forwarded headers, bodies a leg cannot use, a client that leaves, and a
//! configuration Envoy refuses.

use bytes::Bytes;
use gateway_tests::envoy::{client, custom, try_client, Envoy, EnvoyBuilder};
use gateway_tests::upstream::{describe, Reply, Upstream};
use gateway_tests::{chain, wait};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// The `hang` endpoint's deadline (its legs' timeout); its upstream answers after 20 s.
const HANG_DEADLINE_MS: u64 = 1500;

/// Each leg delay of the parallel test; sequential legs would start this far apart.
const SLOW: Duration = Duration::from_millis(300);

fn user() -> Value {
    json!({ "id": "u-1", "name": "Ada", "password_hash": "$2b$secret" })
}

fn orders() -> Value {
    json!({ "data": { "items": [{ "id": 1 }, { "id": 2 }] }, "total": 2 })
}

fn stats() -> Value {
    json!({ "views": 10, "likes": 3 })
}

fn gzipped(doc: &Value) -> Bytes {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(doc.to_string().as_bytes()).unwrap();
    Bytes::from(gz.finish().unwrap())
}

/// The legs' upstream: one path per kind of answer.
async fn svc() -> Upstream {
    let big = Bytes::from(format!("{{\"pad\": \"{}\"}}", "x".repeat(10 * 1024 * 1024)));
    let gz = gzipped(&stats());
    Upstream::start(move |r| {
        let path = r.path.split('?').next().unwrap_or("");
        match path {
            "/users/u-1" => Reply::json(200, &user()),
            "/orders" => Reply::json(200, &orders()),
            "/stats" => Reply::json(200, &stats()),
            "/hang" => Reply::json(200, &json!({})).delay(Duration::from_secs(20)),
            "/invalid" => Reply::new(200)
                .header("content-type", "application/json")
                .body("{\"a\": "),
            "/big" => Reply::new(200)
                .header("content-type", "application/json")
                .body(big.clone()),
            "/gzip" => Reply::new(200)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(gz.clone()),
            p if p.starts_with("/slow/") => Reply::json(200, &json!({ "leg": p })).delay(SLOW),
            p if p.starts_with("/echo/") => Reply::json(200, &describe(r)),
            _ => Reply::text(200, "plain"),
        }
    })
    .await
    .unwrap()
}

fn leg(name: &str, cluster: &str, path: &str) -> Value {
    json!({ "name": name, "cluster": cluster, "path": path })
}

fn with(mut leg: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().into_iter().flatten() {
        leg[k] = v.clone();
    }
    leg
}

/// One endpoint per route of `tests/envoy/aggregate.yaml`, bound by route name.
fn config() -> Value {
    let required = json!({ "required": true });
    let endpoints = json!({
        "dashboard": { "legs": [
            with(leg("user", "svc", "/users/${header.x-user-id}"),
                 json!({ "required": true, "body": { "strip": ["password_hash"] } })),
            with(leg("orders", "svc", "/orders?limit=${query.limit}"),
                 json!({ "group": "recent_orders", "target": "data.items" })),
            with(leg("stats", "svc", "/stats"), json!({ "merge": true })),
        ]},
        "parallel": { "legs": [
            leg("one", "svc", "/slow/1"), leg("two", "svc", "/slow/2"), leg("three", "svc", "/slow/3"),
        ]},
        "partial": { "legs": [
            with(leg("user", "svc", "/users/u-1"), required.clone()),
            leg("inbox", "down", "/inbox"),
            leg("ghost", "nowhere", "/ghost"),
        ]},
        "required": { "legs": [
            leg("user", "svc", "/users/u-1"),
            with(leg("inbox", "down", "/inbox"), required.clone()),
        ]},
        "unknown": { "legs": [with(leg("ghost", "nowhere", "/ghost"), required.clone())] },
        "timeout": { "deadline_ms": 2000, "legs": [
            leg("user", "svc", "/users/u-1"),
            with(leg("slow", "svc", "/hang"), json!({ "required": true, "timeout_ms": 300 })),
        ]},
        "headers": { "legs": [
            leg("one", "svc", "/echo/1"),
            leg("two", "svc", "/echo/2"),
            with(leg("credentialed", "svc", "/echo/3"), json!({ "forward_headers": ["authorization"] })),
        ]},
        "bodies": { "legs": [
            with(leg("stats", "svc", "/stats"), json!({ "required": true, "merge": true })),
            leg("invalid", "svc", "/invalid"),
            leg("big", "svc", "/big"),
            leg("gzip", "svc", "/gzip"),
        ]},
        "hang": { "deadline_ms": HANG_DEADLINE_MS, "legs": [leg("a", "svc", "/hang"), leg("b", "svc", "/hang")] },
    });
    let routes: serde_json::Map<String, Value> = (endpoints.as_object().unwrap().keys())
        .map(|k| (k.clone(), Value::from(k.as_str())))
        .collect();
    json!({ "endpoints": endpoints, "routes": routes })
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn builder(up: &Upstream, filter: Value) -> EnvoyBuilder {
    EnvoyBuilder::from_repo_file("aggregate", "tests/envoy/aggregate.yaml")
        .unwrap()
        .var("HTTP_FILTERS", chain::with_router(vec![filter]))
        .var("SVC_PORT", up.port())
        .var("DOWN_PORT", closed_port())
}

async fn envoy(up: &Upstream) -> Envoy {
    let filter = chain::wasm("aggregate", &config()).unwrap();
    builder(up, filter).start().await.unwrap()
}

async fn get(envoy: &Envoy, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .get(envoy.url("main", path))
        .header("x-user-id", "u-1")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn all_legs_answer_and_the_body_is_theirs_merged() {
    let up = svc().await;
    let envoy = envoy(&up).await;
    let (status, headers, body) = get(&envoy, "/agg/dashboard?limit=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-aggregate-complete"), Some("true"));
    let mut expected_user = user();
    expected_user
        .as_object_mut()
        .unwrap()
        .remove("password_hash");
    let mut expected = json!({
        "user": expected_user,
        "recent_orders": orders()["data"]["items"],
    });
    for (k, v) in stats().as_object().unwrap() {
        expected[k] = v.clone();
    }
    assert_eq!(body, expected);
    let mut paths: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(paths, ["/orders?limit=2", "/stats", "/users/u-1"]);

    // A route that names no endpoint is not aggregated.
    let plain = client()
        .get(envoy.url("main", "/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.text().await.unwrap(), "plain");
    assert_eq!(up.hits(), 4);

    let complete = custom("aggregate.dashboard.complete");
    envoy.wait_stat_at_least(&complete, 1).await.unwrap();
    for leg in ["user", "orders", "stats"] {
        let observed = custom(&format!("aggregate.dashboard.{leg}.latency_le_inf"));
        envoy.wait_stat_at_least(&observed, 1).await.unwrap();
    }
}

#[tokio::test]
async fn legs_run_in_parallel() {
    let up = svc().await;
    let envoy = envoy(&up).await;
    let (status, _, body) = get(&envoy, "/agg/parallel").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["three"]["leg"], "/slow/3");
    let arrived: Vec<_> = up.requests().iter().map(|r| r.arrived).collect();
    assert_eq!(arrived.len(), 3);
    let (first, last) = (arrived.iter().min().unwrap(), arrived.iter().max().unwrap());
    // Each leg takes SLOW: the last started before the first had answered.
    assert!(
        last.duration_since(*first) < SLOW,
        "legs started {:?} apart",
        last.duration_since(*first)
    );
}

#[tokio::test]
async fn a_failed_optional_leg_is_null_and_listed() {
    let up = svc().await;
    let envoy = envoy(&up).await;
    let (status, headers, body) = get(&envoy, "/agg/partial").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-aggregate-complete"), Some("false"));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(body["user"], user());
    assert_eq!(body["inbox"], Value::Null);
    assert_eq!(body["ghost"], Value::Null);
    assert_eq!(
        body["_errors"],
        json!([
            { "leg": "inbox", "status": 503 },
            { "leg": "ghost", "reason": "unroutable" },
        ])
    );
}

#[tokio::test]
async fn a_failed_required_leg_is_a_502_naming_it() {
    let up = svc().await;
    let envoy = envoy(&up).await;
    let (status, _, body) = get(&envoy, "/agg/required").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "bad_gateway");
    assert_eq!(body["leg"], "inbox");
    assert_eq!(body["status"], 503);
    // A cluster Envoy does not know: the call cannot be sent.
    let (status, _, body) = get(&envoy, "/agg/unknown").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["leg"], "ghost");
    assert_eq!(body["reason"], "unroutable");
    envoy
        .wait_stat_at_least(&custom("aggregate.required.failed"), 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_required_leg_out_of_time_is_a_504_naming_it() {
    let up = svc().await;
    let envoy = envoy(&up).await;
    let (status, _, body) = get(&envoy, "/agg/timeout").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "gateway_timeout");
    assert_eq!(body["leg"], "slow");
    assert_eq!(body["reason"], "timeout");
}

#[tokio::test]
async fn legs_get_identity_and_trace_headers_and_never_the_credentials() {
    let up = svc().await;
    let envoy = envoy(&up).await;
    let resp = client()
        .get(envoy.url("main", "/agg/headers"))
        .header("authorization", "Bearer client-token")
        .header("cookie", "session=s")
        .header("x-user-id", "u-1")
        .header("x-request-id", "req-7")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-internal-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let requests = up.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        let echo = r.path.as_str();
        if echo == "/echo/3" {
            // forward_headers: ["authorization"] and nothing else.
            assert_eq!(
                r.header("authorization").as_deref(),
                Some("Bearer client-token")
            );
            assert_eq!(r.header("x-user-id"), None);
            continue;
        }
        assert_eq!(r.header("x-user-id").as_deref(), Some("u-1"), "{echo}");
        assert_eq!(r.header("x-request-id").as_deref(), Some("req-7"), "{echo}");
        assert!(r.header("traceparent").is_some(), "{echo}");
        for never in ["authorization", "cookie", "x-internal-debug"] {
            assert_eq!(r.header(never), None, "{never} reached {echo}");
        }
    }
}

#[tokio::test]
async fn bodies_a_leg_cannot_use_fail_that_leg_only() {
    let up = svc().await;
    let envoy = envoy(&up).await;
    let (status, _, body) = get(&envoy, "/agg/bodies").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["views"], 10, "{body}");
    assert_eq!(
        body["_errors"],
        json!([
            { "leg": "invalid", "reason": "invalid_json" },
            { "leg": "big", "reason": "too_large" },
            { "leg": "gzip", "reason": "encoded" },
        ])
    );
    // The VM is intact: the next aggregation works.
    let (status, _, _) = get(&envoy, "/agg/dashboard?limit=2").await;
    assert_eq!(status, 200);
}

/// Envoy 1.40 does not cancel a wasm context's calls when its client leaves (measured:
/// `upstream_rq_cancelled` stays 0 and the calls stay active), and proxy-wasm has no call to
/// cancel one: a leg outlives its client by at most its timeout, which the deadline bounds.
/// Nothing stays stuck: the active requests return to 0 at the deadline, not at the upstream's
/// pace (20 s), the late answers find no request, and the next aggregation is served.
#[tokio::test]
async fn a_client_that_leaves_leaves_no_call_behind() {
    let up = svc().await;
    let envoy = envoy(&up).await;
    let impatient = try_client(Duration::from_millis(300)).unwrap();
    let left = std::time::Instant::now();
    let sent = impatient.get(envoy.url("main", "/agg/hang")).send().await;
    assert!(sent.is_err(), "the legs take 20 s");
    assert_eq!(up.hits(), 2, "both legs were out");
    let zero = |stat: &'static str| {
        let envoy = &envoy;
        async move {
            wait::until(&format!("{stat} = 0"), Duration::from_secs(10), || async {
                Ok(envoy.stat(stat).await?.filter(|v| *v == 0))
            })
            .await
            .unwrap()
        }
    };
    zero("http.ingress.downstream_rq_active").await;
    zero("cluster.svc.upstream_rq_active").await;
    let ended = left.elapsed();
    assert!(
        ended < Duration::from_secs(10),
        "the calls ended at the deadline, not the upstream's 20 s ({ended:?})"
    );
    envoy
        .wait_stat_at_least("cluster.svc.upstream_rq_timeout", 2)
        .await
        .unwrap();
    envoy
        .wait_stat_at_least(&custom("aggregate.hang.abandoned"), 1)
        .await
        .unwrap();
    let (status, _, _) = get(&envoy, "/agg/dashboard?limit=2").await;
    assert_eq!(status, 200, "Envoy and the VM are intact");
}

#[tokio::test]
async fn envoy_refuses_a_bad_configuration_naming_the_field() {
    let up = svc().await;
    let mut bad = config();
    bad["endpoints"]["dashboard"]["legs"][1]["name"] = json!("user");
    let filter = chain::wasm("aggregate", &bad).unwrap();
    let (status, log) = builder(&up, filter)
        .start_expecting_exit(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(!status.success());
    assert!(
        log.contains(
            "field `endpoints.dashboard.legs[1].name`: \"user\" is already the name of legs[0]"
        ),
        "{log}"
    );
}

/// The bundle's aggregate stage (`dist/bundle.wasm` with only an `aggregate` section) answers
/// exactly as aggregate.wasm does: merged, partial and failed aggregations, bodies a leg cannot
/// use, and routes naming no endpoint.
#[tokio::test]
async fn the_bundles_aggregate_stage_answers_as_the_filter_does() {
    let up = svc().await;
    let alone = envoy(&up).await;
    let filter = chain::wasm("bundle", &json!({ "aggregate": config() })).unwrap();
    let bundled = builder(&up, filter).start().await.unwrap();
    for path in [
        "/agg/dashboard?limit=2",
        "/agg/partial",
        "/agg/required",
        "/agg/unknown",
        "/agg/bodies",
    ] {
        let (status, headers, mut body) = get(&alone, path).await;
        let (b_status, b_headers, mut b_body) = get(&bundled, path).await;
        // Each request has its own id.
        for b in [&mut body, &mut b_body] {
            b.as_object_mut().map(|o| o.remove("request_id"));
        }
        assert_eq!((b_status, &b_body), (status, &body), "{path}");
        for name in ["x-aggregate-complete", "cache-control", "content-type"] {
            assert_eq!(
                header(&b_headers, name),
                header(&headers, name),
                "{path}: {name}"
            );
        }
    }
    let plain = client()
        .get(bundled.url("main", "/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.text().await.unwrap(), "plain");
    let complete = custom("aggregate.dashboard.complete");
    bundled.wait_stat_at_least(&complete, 1).await.unwrap();
}
