//! `make bench`: side-by-side figures measured in one run, on loopback, one Envoy worker.
//!
//! Usage: gateway-bench [SECTION...]   sections: floor, filters (default: all)
//! BENCH_SECONDS sets the measured duration of each row (default 8).

use anyhow::Result;
use gateway_tests::bench::{wrk, Figures, Load, Table};
use gateway_tests::chain;
use gateway_tests::envoy::EnvoyBuilder;
use gateway_tests::template::yaml_string;
use serde_json::{json, Value};

/// A ~16 KB JSON document with the five fields the strip benchmark removes.
fn json_16k() -> String {
    let items: Vec<Value> = (0..90)
        .map(|i| {
            json!({
                "id": i, "sku": format!("SKU-{i:05}"), "name": format!("Item number {i}"),
                "price": 1999 + i, "internal_id": format!("inv-{i:06}"), "tags": ["a", "b"]
            })
        })
        .collect();
    json!({
        "id": 42,
        "user": { "name": "Ada Lovelace", "email": "ada@example.com", "ssn": "078-05-1120" },
        "items": items,
        "debug_info": { "db_ms": 3, "host": "orders-7f9c", "query": "SELECT * FROM orders" },
        "internal_notes": "do not show to customers",
        "meta": { "page": 1, "trace": "4bf92f3577b34da6a3ce929d0e0e4736" }
    })
    .to_string()
}

const STRIP_FIVE: [&str; 5] = [
    "debug_info",
    "user.ssn",
    "items[*].internal_id",
    "internal_notes",
    "meta.trace",
];

async fn measure(name: &str, filters: Vec<Value>, path: &str, load: &Load) -> Result<Figures> {
    let envoy = EnvoyBuilder::from_repo_file(name, "tests/envoy/bench.yaml")?
        .var("HTTP_FILTERS", chain::with_router(filters))
        .var("JSON_BODY", yaml_string(&json_16k()))
        .concurrency(1)
        .start()
        .await?;
    let url = envoy.url("main", path);
    let headers = [("x-debug", "1"), ("x-client", "bench")];
    let load = load.clone();
    let figures = tokio::task::spawn_blocking(move || wrk(&url, &headers, &load)).await??;
    drop(envoy);
    Ok(figures)
}

async fn filters_section(load: &Load) -> Result<String> {
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

/// Prices the floor: the VM entry/exit cost per request, and single host calls on top of it.
async fn floor_section(load: &Load) -> Result<String> {
    eprintln!("floor: pricing proxy-wasm callbacks and host calls");
    let mut t =
        Table::new("What the wasm floor is made of (one Envoy worker, 10 calls per request)");
    let probe = |cfg: Value| chain::wasm("passthrough", &cfg);
    t.add(
        "a",
        "no filter",
        measure("a", vec![], "/small", load).await?,
    );
    t.add(
        "f",
        "pass-through wasm filter",
        measure("f", vec![probe(json!({}))?], "/small", load).await?,
    );
    t.add(
        "f2",
        "two pass-through wasm filters",
        measure(
            "f2",
            vec![
                probe(json!({}))?,
                chain::wasm_at(
                    "passthrough2",
                    &gateway_tests::tools::wasm("passthrough")?
                        .display()
                        .to_string(),
                    "{}",
                ),
            ],
            "/small",
            load,
        )
        .await?,
    );
    let rows = [
        (
            "map",
            "read_header_map",
            "10 x get_http_request_headers (whole map)",
        ),
        (
            "get",
            "get_header",
            "10 x get_http_request_header(\":path\")",
        ),
        ("set", "set_header", "10 x set_http_request_header"),
        ("prop", "get_property", "10 x get_property(request.path)"),
    ];
    for (key, field, label) in rows {
        t.add(
            key,
            label,
            measure(key, vec![probe(json!({ field: 10 }))?], "/small", load).await?,
        );
    }
    let mut out = t.render(&[("f", "a", None), ("f2", "a", None)]);
    let per_req = |k: &str| t.get(k).map(|f| 1e6 / f.rps);
    if let (Some(a), Some(f), Some(f2)) = (per_req("a"), per_req("f"), per_req("f2")) {
        out.push_str(&format!(
            "\nWorker time per request: no filter {a:.1} us; one pass-through filter adds {:.1} us; a second adds {:.1} us.\n",
            f - a,
            f2 - f
        ));
    }
    for (key, _, label) in rows {
        if let (Some(f), Some(p)) = (per_req("f"), per_req(key)) {
            out.push_str(&format!("- {label}: {:.2} us per call\n", (p - f) / 10.0));
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s || a == "all");
    let load = Load::default();
    let mut report = String::new();
    if want("floor") {
        report.push_str(&floor_section(&load).await?);
        report.push('\n');
    }
    if want("filters") {
        report.push_str(&filters_section(&load).await?);
        report.push('\n');
    }
    println!("{report}");
    Ok(())
}
