//! Native cost of the filter's per-request logic (both phases, header maps built as the glue
//! builds them), to set against the per-request figures of `make bench`:
//! `cargo run --release -p tenant-cache-key --example plan_bench`.

use filter_core::HeaderMap;
use std::hint::black_box;
use std::time::Instant;
use tenant_cache_key::TenantPolicy;

fn main() {
    // sha256("bench-key"), as in the benchmark's tenant rows.
    let config = r#"{
        "plan_header": "x-tenant-plan",
        "sources": [{ "api_key": { "keys": [{
            "sha256": "b0962662e937d44c699c8305d90cbf190b3150c59b13863d1380b5cc3c711bb7",
            "tenant": "acme", "plan": "pro" }] } }],
        "cache_routes": [{ "match": { "path_prefix": "/" }, "ttl": 60 }]
    }"#;
    let Ok(policy) = TenantPolicy::new(config.as_bytes()) else {
        eprintln!("bad benchmark config");
        return;
    };
    let request = [
        (":authority", "127.0.0.1:10000"),
        (":path", "/small"),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-debug", "1"),
        ("x-client", "bench"),
        ("x-api-key", "bench-key"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "8d1bd4ea-7d33-4b7e-9f1c-1c3f0b7e2a11"),
    ];
    let response = [
        (":status", "200"),
        ("content-length", "3"),
        ("content-type", "text/plain"),
        ("x-powered-by", "bench-upstream"),
        ("date", "Mon, 23 Nov 2026 12:00:00 GMT"),
        ("server", "envoy"),
    ];
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let n = 200_000;
    let started = Instant::now();
    for _ in 0..n {
        let req = HeaderMap::new(owned(&request));
        let plan = policy.request_plan(black_box(&req));
        let resp = HeaderMap::new(owned(&response));
        black_box(policy.response_edits(plan.facts, &resp));
    }
    let per = started.elapsed() / n;
    println!("request plan + response edits, header maps included: {per:?} per request");
}
