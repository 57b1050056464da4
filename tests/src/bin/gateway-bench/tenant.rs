//! tenant_cache_key against its floor.

use super::*;

/// The tenant filter's cost: the same one-filter chain with the pass-through module (the wasm
/// floor every filter pays) and with tenant_cache_key, so the ratio is the filter's own work.
pub(super) async fn tenant_section(load: &Load) -> Result<String> {
    eprintln!(
        "tenant: {} connections, {}s per row, one Envoy worker",
        load.connections,
        load.duration.as_secs()
    );
    // sha256("bench-key"), the key wrk sends on every request.
    let keys = json!([{
        "sha256": "b0962662e937d44c699c8305d90cbf190b3150c59b13863d1380b5cc3c711bb7",
        "tenant": "acme", "plan": "pro"
    }]);
    let both = json!({
        "plan_header": "x-tenant-plan",
        "sources": [{ "api_key": { "keys": keys } }],
        "cache_routes": [{ "match": { "path_prefix": "/" }, "ttl": 60 }]
    });
    let request_stage = json!({
        "stage": "request",
        "plan_header": "x-tenant-plan",
        "sources": [{ "api_key": { "keys": keys } }]
    });
    let response_stage = json!({ "stage": "response" });
    let tenant = |cfg: &Value| chain::wasm("tenant_cache_key", cfg);
    let key = [("x-api-key", "bench-key")];

    let mut t =
        Table::new("Tenant filter cost through one Envoy worker (wrk -t1 -c16, direct_response)");
    t.add(
        "a",
        "no filter",
        measure_with("a", vec![], "/small", &key, load).await?,
    );
    t.add(
        "f",
        "pass-through wasm filter (the floor)",
        measure_with(
            "f",
            vec![chain::wasm("passthrough", &json!({}))?],
            "/small",
            &key,
            load,
        )
        .await?,
    );
    t.add(
        "t",
        "tenant_cache_key, both stages: API key, Vary, TTL",
        measure_with("t", vec![tenant(&both)?], "/small", &key, load).await?,
    );
    t.add(
        "tq",
        "tenant_cache_key, request stage (before the cache)",
        measure_with("tq", vec![tenant(&request_stage)?], "/small", &key, load).await?,
    );
    t.add(
        "tr",
        "tenant_cache_key, response stage (the upstream filter's work)",
        measure_with("tr", vec![tenant(&response_stage)?], "/small", &key, load).await?,
    );
    Ok(t.render(&[
        ("f", "a", None),
        ("t", "f", Some(0.95)),
        ("tq", "f", Some(0.95)),
        ("tr", "f", Some(0.95)),
    ]))
}
