//! The ratelimit stage alone, on a direct_response route, one Envoy worker: what each part of
//! its per-request work costs (the gateway section measures it inside the whole gateway, where
//! the upstream, the service and Redis share the two cores).

use super::*;

/// Leased limits no row reaches, with leases large enough that lease calls are rare.
const LIMITS: &str = "domain: edge\ndescriptors:\n  - key: route\n    rate_limit: { unit: hour, requests_per_unit: 1000000000, mode: leased, lease_size: 10000, lease_ttl: 60s }\n  - key: tenant\n    rate_limit: { unit: hour, requests_per_unit: 1000000000, mode: leased, lease_size: 10000, lease_ttl: 60s }\n";

/// tests/envoy/leased.yaml with its route answering directly, named `bench`.
fn direct(rendered: &str) -> Result<String> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(rendered)?;
    let route = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0];
    *route = serde_yaml::to_value(json!({
        "name": "bench",
        "match": { "prefix": "/" },
        "direct_response": { "status": 200, "body": { "inline_string": "ok\n" } }
    }))?;
    Ok(serde_yaml::to_string(&doc)?)
}

fn stage(rule: Value) -> Result<Value> {
    chain::wasm(
        "ratelimit",
        &json!({ "cluster": "ratelimit", "domain": "edge", "lease_size": 10000,
                 "rules": [rule] }),
    )
}

pub(super) async fn stage_section(load: &Load) -> Result<String> {
    eprintln!("stage: the ratelimit stage alone on a direct_response route");
    let redis = gateway_tests::redis::RedisServer::start()?;
    let rls = gateway_tests::ratelimit::RateLimitService::start(&redis.url(), LIMITS, &[]).await?;
    rls.wait_ready(std::time::Duration::from_secs(10)).await?;
    let route = |key: &str| json!([{ "generic_key": { "descriptor_key": "route", "descriptor_value": key } }]);
    let rows: Vec<(&'static str, &'static str, Vec<Value>)> = vec![
        ("none", "no filter", vec![]),
        (
            "floor",
            "pass-through wasm filter",
            vec![chain::wasm("passthrough", &json!({}))?],
        ),
        (
            "miss",
            "ratelimit: no rule applies (header map read, rule miss)",
            vec![stage(
                json!({ "match": { "path_prefix": "/nothing" }, "descriptors": [route("x")] }),
            )?],
        ),
        (
            "pool",
            "ratelimit: one generic_key descriptor (pool compare-and-swap, response headers)",
            vec![stage(json!({ "descriptors": [route("bench")] }))?],
        ),
        (
            "route",
            "ratelimit: the same with a routes list (xds.route_name read)",
            vec![stage(
                json!({ "routes": ["bench"], "descriptors": [route("bench")] }),
            )?],
        ),
        (
            "two",
            "ratelimit: route and tenant descriptors (x-client header)",
            vec![stage(
                json!({ "descriptors": [route("bench"), [{ "request_headers": {
                "header_name": "x-client", "descriptor_key": "tenant" } }]] }),
            )?],
        ),
    ];
    let mut envoys = Vec::new();
    for (key, _, filters) in &rows {
        let rendered = EnvoyBuilder::from_repo_file(key, "tests/envoy/leased.yaml")?
            .var("HTTP_FILTERS", chain::with_router(filters.clone()))
            .var("UPSTREAM_PORT", 9)
            .var("RLS_PORT", rls.grpc_port())
            .render()?;
        let envoy = EnvoyBuilder::new(key, &direct(&rendered)?)
            .concurrency(1)
            .start()
            .await?;
        envoys.push(envoy);
    }
    let mut t = Table::new(
        "The ratelimit stage alone through one Envoy worker (wrk -t1 -c16, direct_response)",
    );
    let headers = [("x-client", "bench")];
    for round in 0..2 {
        for ((key, label, _), envoy) in rows.iter().zip(&envoys) {
            let (url, l) = (envoy.url("main", "/small"), load.clone());
            let f =
                tokio::task::spawn_blocking(move || wrk_with(&url, &headers, None, &l)).await??;
            if round == 1 {
                t.add(key, label, f);
            }
        }
    }
    let mut out = t.render(&[
        ("floor", "none", None),
        ("miss", "floor", None),
        ("pool", "floor", None),
        ("route", "pool", None),
        ("two", "pool", None),
    ]);
    out.push('\n');
    Ok(out)
}
