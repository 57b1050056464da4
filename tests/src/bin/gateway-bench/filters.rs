//! The transform filter against its floor: header rules, body strips, sizes.

use super::*;

pub(super) async fn filters_section(load: &Load) -> Result<String> {
    eprintln!(
        "filters: {} connections, {}s per row, one Envoy worker",
        load.connections,
        load.duration.as_secs()
    );
    let header_rules = json!({
        "rules": [{
            "match": { "path_prefix": "/" },
            "request": { "headers": {
                "remove": ["x-debug"],
                "set": { "x-gateway-route": "bench" },
                "add": { "x-request-source": "edge" }
            }},
            "response": { "headers": {
                "remove": ["x-powered-by"],
                "set": { "x-gateway": "edgegate" }
            }}
        }]
    });
    let native = chain::header_mutation(
        json!([
            { "remove": "x-debug" },
            { "append": { "header": { "key": "x-gateway-route", "value": "bench" }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" } },
            { "append": { "header": { "key": "x-request-source", "value": "edge" }, "append_action": "ADD_IF_ABSENT" } }
        ]),
        json!([
            { "remove": "x-powered-by" },
            { "append": { "header": { "key": "x-gateway", "value": "edgegate" }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" } }
        ]),
    );
    let strip = json!({ "rules": [{ "match": { "path_exact": "/json" },
        "response": { "body": { "strip": STRIP_FIVE } } }] });

    let mut t = Table::new("Filter cost through one Envoy worker (wrk -t1 -c16, direct_response)");
    t.add(
        "a",
        "no filter",
        measure("a", vec![], "/small", load).await?,
    );
    t.add(
        "b",
        "native header_mutation, the header rewrites of (c)",
        measure("b", vec![native], "/small", load).await?,
    );
    t.add(
        "f",
        "pass-through wasm filter (the floor)",
        measure(
            "f",
            vec![chain::wasm("passthrough", &json!({}))?],
            "/small",
            load,
        )
        .await?,
    );
    t.add(
        "c",
        "transform.wasm: the same header rewrites",
        measure(
            "c",
            vec![chain::wasm("transform", &header_rules)?],
            "/small",
            load,
        )
        .await?,
    );
    t.add(
        "a16",
        "no filter, 16 KB JSON response",
        measure("a16", vec![], "/json", load).await?,
    );
    t.add(
        "f16",
        "pass-through wasm, 16 KB JSON response",
        measure(
            "f16",
            vec![chain::wasm("passthrough", &json!({}))?],
            "/json",
            load,
        )
        .await?,
    );
    t.add(
        "d",
        "transform.wasm: strip 5 fields from 16 KB JSON",
        measure("d", vec![chain::wasm("transform", &strip)?], "/json", load).await?,
    );
    Ok(t.render(&[
        ("f", "a", None),
        ("c", "f", Some(0.9)),
        ("d", "f", Some(0.7)),
        ("d", "f16", None),
        ("c", "b", None),
    ]))
}
