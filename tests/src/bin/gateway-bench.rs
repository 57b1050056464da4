//! `make bench`: side-by-side figures measured in one run, on loopback, one Envoy worker.
//!
//! Usage: gateway-bench [SECTION...]   sections: floor, filters, jwt, ratelimit, tenant, chain,
//! gateway (default: all)
//! BENCH_SECONDS sets the measured duration of each row (default 8); BENCH_ROUNDS how many
//! interleaved rounds the chain and gateway sections take the median of (default 3).

use anyhow::Result;
use gateway_tests::bench::{paced, token_rotation_script, wrk_with, Figures, Load, Table};
use gateway_tests::chain;
use gateway_tests::envoy::{Envoy, EnvoyBuilder};
use gateway_tests::stages;
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
    measure_with(name, filters, path, &[], load).await
}

/// `measure` with extra request headers (on top of the two every row sends).
async fn measure_with(
    name: &str,
    filters: Vec<Value>,
    path: &str,
    extra_headers: &[(&'static str, &'static str)],
    load: &Load,
) -> Result<Figures> {
    let mut headers = vec![("x-debug", "1"), ("x-client", "bench")];
    headers.extend_from_slice(extra_headers);
    measure_driven(name, filters, path, Drive::Header(&headers), load).await
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

/// How wrk drives one row: fixed headers, or a Lua script (e.g. a token rotation).
enum Drive<'a> {
    Header(&'a [(&'a str, &'a str)]),
    Script(&'a std::path::Path),
}

async fn measure_driven(
    name: &str,
    filters: Vec<Value>,
    path: &str,
    drive: Drive<'_>,
    load: &Load,
) -> Result<Figures> {
    let envoy = bench_envoy(name, filters).await?;
    let url = envoy.url("main", path);
    let load = load.clone();
    let (headers, script): (Vec<(String, String)>, Option<std::path::PathBuf>) = match drive {
        Drive::Header(h) => (
            h.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            None,
        ),
        Drive::Script(p) => (Vec::new(), Some(p.to_path_buf())),
    };
    let figures = tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        wrk_with(&url, &h, script.as_deref(), &load)
    })
    .await??;
    drop(envoy);
    Ok(figures)
}

/// `n` valid RS256 tokens (kid `rsa-1`, signed in-process), one per line; `edit` changes the
/// claims of token `i`.
fn rs256_tokens(now: u64, n: usize, edit: impl Fn(usize, &mut Value)) -> String {
    use jwt_auth::testing::{b64, claims, keys};
    let mut out = String::new();
    for i in 0..n {
        let mut c = claims(now);
        edit(i, &mut c);
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "RS256", "kid": "rsa-1"}).to_string()),
            b64(c.to_string())
        );
        out.push_str(&format!(
            "{input}.{}\n",
            b64(keys().rsa.rs256(input.as_bytes()))
        ));
    }
    out
}

/// jwt_auth.wasm against Envoy's native jwt_authn, same keys, tokens and cache size.
async fn jwt_section(load: &Load) -> Result<String> {
    use jwt_auth::testing::{jwks, token};
    eprintln!("jwt: generating keys and 2,000 RS256 tokens");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let jwks_text = jwks(false).to_string();
    let rs = token("RS256", now);
    let es = token("ES256", now);
    let dir = tempfile::tempdir()?;
    let tokens_file = dir.path().join("tokens.txt");
    std::fs::write(
        &tokens_file,
        rs256_tokens(now, 2000, |i, c| c["jti"] = json!(format!("bench-{i}"))),
    )?;
    let script = dir.path().join("rotate.lua");
    std::fs::write(&script, token_rotation_script("/small", &tokens_file))?;

    // Both caches hold 1,000 entries: a cycle over 2,000 tokens misses every time in an LRU,
    // so row (c) prices signature verification; rows (a) and (b) price the cache path.
    const CACHE: u32 = 1000;
    let native = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "idp": {
                "issuer": "https://idp",
                "audiences": ["api"],
                "local_jwks": { "inline_string": jwks_text },
                "claim_to_headers": [{ "header_name": "x-user-id", "claim_name": "sub" }],
                "jwt_cache_config": { "jwt_cache_size": CACHE },
            }},
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" } }],
        },
    });
    let ours = chain::wasm(
        "jwt_auth",
        &json!({
            "providers": { "idp": {
                "issuer": "https://idp",
                "audiences": ["api"],
                "local_jwks": { "inline": jwks_text },
                "claim_to_headers": [{ "header_name": "x-user-id", "claim_name": "sub" }],
            }},
            "rules": [{ "requires": { "provider_name": "idp" } }],
            "token_cache": { "max_entries": CACHE },
        }),
    )?;
    let floor = chain::wasm("passthrough", &json!({}))?;
    let rs_auth = format!("Bearer {rs}");
    let es_auth = format!("Bearer {es}");
    let rs_h = [("authorization", rs_auth.as_str())];
    let es_h = [("authorization", es_auth.as_str())];
    eprintln!(
        "jwt: {} connections, {}s per row, one Envoy worker",
        load.connections,
        load.duration.as_secs()
    );
    let mut t =
        Table::new("JWT verification through one Envoy worker (wrk -t1 -c16, direct_response)");
    let rows: Vec<(&str, &str, Vec<Value>, Drive)> = vec![
        ("none", "no filter", vec![], Drive::Header(&rs_h)),
        (
            "f",
            "pass-through wasm filter (the floor)",
            vec![floor],
            Drive::Header(&rs_h),
        ),
        (
            "na",
            "native jwt_authn: one RS256 token repeated",
            vec![native.clone()],
            Drive::Header(&rs_h),
        ),
        (
            "nb",
            "native jwt_authn: one ES256 token repeated",
            vec![native.clone()],
            Drive::Header(&es_h),
        ),
        (
            "nc",
            "native jwt_authn: 2,000 distinct RS256 tokens",
            vec![native],
            Drive::Script(&script),
        ),
        (
            "wa",
            "jwt_auth.wasm: one RS256 token repeated",
            vec![ours.clone()],
            Drive::Header(&rs_h),
        ),
        (
            "wb",
            "jwt_auth.wasm: one ES256 token repeated",
            vec![ours.clone()],
            Drive::Header(&es_h),
        ),
        (
            "wc",
            "jwt_auth.wasm: 2,000 distinct RS256 tokens",
            vec![ours],
            Drive::Script(&script),
        ),
    ];
    for (key, label, filters, drive) in rows {
        t.add(
            key,
            label,
            measure_driven(key, filters, "/small", drive, load).await?,
        );
    }
    Ok(t.render(&[
        ("wa", "f", Some(0.9)),
        ("wb", "f", None),
        ("wc", "nc", Some(0.3)),
        ("wa", "na", None),
        ("na", "none", None),
        ("nc", "none", None),
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

/// The tenant filter's cost: the same one-filter chain with the pass-through module (the wasm
/// floor every filter pays) and with tenant_cache_key, so the ratio is the filter's own work.
async fn tenant_section(load: &Load) -> Result<String> {
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

/// The bench template with `filters`, one worker.
async fn bench_envoy(name: &str, filters: Vec<Value>) -> Result<Envoy> {
    EnvoyBuilder::from_repo_file(name, "tests/envoy/bench.yaml")?
        .var("HTTP_FILTERS", chain::with_router(filters))
        .var("JSON_BODY", yaml_string(&json_16k()))
        .concurrency(1)
        .start()
        .await
}

/// Saturation rows: one wrk run per `(key, label, url)`, each request with the next token of
/// the rotation script.
async fn saturate(
    t: &mut Table,
    rows: &[(&'static str, &'static str, String)],
    script_path: &std::path::Path,
    load: &Load,
) -> Result<()> {
    // Rounds interleave the rows, so a drift in what else the two cores do falls on every
    // row alike; each row keeps its median round (by req/s).
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); rows.len()];
    for _ in 0..rounds {
        for ((_, _, url), got) in rows.iter().zip(&mut runs) {
            let (u, s, l) = (url.clone(), script_path.to_path_buf(), load.clone());
            got.push(tokio::task::spawn_blocking(move || wrk_with(&u, &[], Some(&s), &l)).await??);
        }
    }
    for ((key, label, _), mut got) in rows.iter().zip(runs) {
        got.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        if let Some(f) = got.get(got.len() / 2) {
            t.add(key, label, *f);
        }
    }
    Ok(())
}

/// The header of the fixed-rate latency table.
const PACED_HEADER: &str = "\n| rate | row | req/s reached | p50 | p99 | added p50 | added p99 | targets (<= 1 ms, <= 5 ms) |\n\
                            |---|---|---:|---:|---:|---:|---:|---|\n";

/// Fixed-rate rows: open-loop load at `rate` (see [`paced`]) against each target in turn;
/// added latency against the first target (the no-filter configuration, which shows "-").
async fn paced_rows(
    what: &str,
    rate: f64,
    targets: &[&(&'static str, &'static str, String)],
    tokens: &[String],
    load: &Load,
) -> Result<String> {
    let mut out = String::new();
    let mut base: Option<Figures> = None;
    for (key, _, url) in targets {
        let f = paced(url, tokens, rate, load).await?;
        eprintln!(
            "  {key:>6}  at {rate:.0}/s: reached {:.0}/s, p50 {:.0} us, p99 {:.0} us",
            f.rps, f.p50_us, f.p99_us
        );
        let is_base = base.is_none();
        let b = *base.get_or_insert(f);
        let (add50, add99) = (f.p50_us - b.p50_us, f.p99_us - b.p99_us);
        let met = if is_base {
            "-"
        } else if add50 <= 1000.0 && add99 <= 5000.0 {
            "yes"
        } else {
            "NO"
        };
        out.push_str(&format!(
            "| {what}: {rate:.0}/s | {key} | {:.0} | {:.0} us | {:.0} us | {add50:.0} us | {add99:.0} us | {met} |\n",
            f.rps, f.p50_us, f.p99_us
        ));
    }
    Ok(out)
}

/// The gateway's wasm chain (envoy/gateway.yaml's jwt_auth -> tenant request stage ->
/// transform) as three filters and as dist/gateway.wasm, against the same Envoy with no filter:
/// throughput at saturation, then latency at fixed rates.
async fn chain_section(load: &Load) -> Result<String> {
    use jwt_auth::testing::jwks;
    eprintln!(
        "chain: 200 RS256 tokens over 10 tenants, GET /api/users/42 (transform strips 2 fields)"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let dir = tempfile::tempdir()?;
    let tokens_file = dir.path().join("tokens.txt");
    let token_text = rs256_tokens(now, 200, |i, c| {
        c["sub"] = json!(format!("user-{i}"));
        c["tenant"] = json!(format!("tenant-{}", i % 10));
    });
    std::fs::write(&tokens_file, &token_text)?;
    let tokens: Vec<String> = token_text.lines().map(String::from).collect();
    let script = token_rotation_script("/api/users/42", &tokens_file);
    let script_path = dir.path().join("rotate.lua");
    std::fs::write(&script_path, &script)?;

    let keys = stages::inline_keys(&jwks(false));
    let tenant_wasm = gateway_tests::tools::wasm("tenant_cache_key")?
        .display()
        .to_string();
    let rows: Vec<(&str, &str, Vec<Value>)> = vec![
        ("none", "no filter (the same route)", vec![]),
        (
            "three",
            "jwt_auth + tenant_cache_key + transform, three wasm filters",
            vec![
                chain::wasm("jwt_auth", &stages::jwt_auth(&keys))?,
                chain::wasm_at(
                    "tenant_request",
                    &tenant_wasm,
                    &stages::tenant_request().to_string(),
                ),
                chain::wasm("transform", &stages::transform())?,
            ],
        ),
        (
            "bundle",
            "gateway.wasm: the same three stages in one filter",
            vec![chain::wasm("gateway", &stages::bundle(&keys))?],
        ),
    ];
    // What each stage costs alone, for what bounds the bundle (saturation only).
    let mut lean_transform = stages::transform();
    if let Some(response) = lean_transform["rules"][0]["response"].as_object_mut() {
        response.remove("body");
    }
    let breakdown: Vec<(&str, &str, Vec<Value>)> = vec![
        (
            "pass",
            "pass-through wasm filter (the floor)",
            vec![chain::wasm("passthrough", &json!({}))?],
        ),
        (
            "jwt",
            "jwt_auth alone",
            vec![chain::wasm("jwt_auth", &stages::jwt_auth(&keys))?],
        ),
        (
            "tenant",
            "tenant_cache_key (request stage) alone",
            vec![chain::wasm_at(
                "tenant_request",
                &tenant_wasm,
                &stages::tenant_request().to_string(),
            )],
        ),
        (
            "tr",
            "transform alone",
            vec![chain::wasm("transform", &stages::transform())?],
        ),
        (
            "tr-nb",
            "transform alone, without the body strip",
            vec![chain::wasm("transform", &lean_transform)?],
        ),
    ];
    let rows: Vec<_> = rows.into_iter().chain(breakdown).collect();
    let mut envoys = Vec::new();
    for (key, _, filters) in &rows {
        envoys.push(bench_envoy(key, filters.clone()).await?);
    }
    eprintln!(
        "chain: {} connections, {}s per row, one Envoy worker",
        load.connections,
        load.duration.as_secs()
    );
    let mut t = Table::new(
        "The gateway's wasm chain through one Envoy worker (wrk -t1 -c16, keep-alive, direct_response)",
    );
    let url = |e: &Envoy| e.url("main", "/api/users/42");
    let targets: Vec<_> = rows
        .iter()
        .zip(&envoys)
        .map(|((key, label, _), e)| (*key, *label, url(e)))
        .collect();
    saturate(&mut t, &targets, &script_path, load).await?;
    let mut out = t.render(&[
        ("bundle", "three", Some(1.5)),
        ("three", "none", None),
        ("bundle", "none", None),
        ("pass", "none", None),
    ]);
    let per_req = |k: &str| t.get(k).map_or(0.0, |f| 1e6 / f.rps);
    out.push_str(&format!(
        "\nWorker time per request over no filter: pass-through {:.0} us; jwt_auth {:.0} us, \
         tenant_cache_key {:.0} us, transform {:.0} us ({:.0} us of it the body strip) alone; \
         three filters {:.0} us; the bundle {:.0} us.\n",
        per_req("pass") - per_req("none"),
        per_req("jwt") - per_req("none"),
        per_req("tenant") - per_req("none"),
        per_req("tr") - per_req("none"),
        per_req("tr") - per_req("tr-nb"),
        per_req("three") - per_req("none"),
        per_req("bundle") - per_req("none"),
    ));

    // Latency at half of each chain's own saturation, against no filter at the same rate.
    // (Half of the no-filter saturation is beyond what either chain serves at all: an
    // open-loop load there only measures a growing queue.)
    let sat = |k: &str| t.get(k).map_or(0.0, |f| f.rps);
    out.push_str(PACED_HEADER);
    for chain in ["three", "bundle"] {
        let what = format!("half of ({chain}) saturation");
        let pair: Vec<_> = targets
            .iter()
            .filter(|(k, _, _)| *k == "none" || *k == chain)
            .collect();
        out.push_str(&paced_rows(&what, sat(chain) / 2.0, &pair, &tokens, load).await?);
    }
    drop(envoys);
    Ok(out)
}

/// Limits no benchmark reaches: every descriptor the gateway sends is checked by the service
/// (a Redis round trip each), none refuses.
const GATEWAY_BENCH_RLS: &str = "\
domain: edge
descriptors:
  - key: tenant
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
  - key: consumer
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
  - key: route
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
";

/// The gateway's HTTP filter list in a rendered envoy/gateway.yaml (the plain listener).
fn gateway_http_filters(doc: &mut serde_yaml::Value) -> Result<&mut Vec<serde_yaml::Value>> {
    doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_sequence_mut()
        .ok_or_else(|| anyhow::anyhow!("gateway.yaml: no http_filters on the first listener"))
}

/// The JSON configuration of the wasm filter `name` in the filter list.
fn wasm_config(filters: &[serde_yaml::Value], name: &str) -> Result<Value> {
    let f = filters
        .iter()
        .find(|f| f["name"].as_str() == Some(name))
        .ok_or_else(|| anyhow::anyhow!("gateway.yaml has no {name} filter"))?;
    let text = f["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{name}: no configuration string"))?;
    Ok(serde_json::from_str(text)?)
}

/// envoy/gateway.yaml ("three"), with its three wasm filters replaced by
/// dist/gateway.wasm configured with their own configurations ("bundle"), or with no HTTP filter
/// but the router ("bare": the same Envoy routing the same request). TLS listener dropped.
fn gateway_variant(rendered: &str, variant: &str) -> Result<String> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(rendered)?;
    if let Some(listeners) = doc["static_resources"]["listeners"].as_sequence_mut() {
        listeners.retain(|l| l["name"].as_str() == Some("gateway"));
    }
    // The local ceiling (tier 1) would turn a saturation run into 429s: it still runs, but a
    // runtime layer turns enforcement off (its runtime key in gateway.yaml).
    if let Some(root) = doc.as_mapping_mut() {
        root.insert(
            "layered_runtime".into(),
            serde_yaml::to_value(json!({"layers": [
                {"name": "bench", "static_layer": {"gateway_ceiling_enforced": 0}}
            ]}))?,
        );
    }
    let filters = gateway_http_filters(&mut doc)?;
    match variant {
        "three" => {}
        "bare" => filters.retain(|f| f["name"].as_str() == Some("envoy.filters.http.router")),
        "no-rls" => filters.retain(|f| f["name"].as_str() != Some("envoy.filters.http.ratelimit")),
        "bundle" => {
            let config = json!({
                "jwt_auth": wasm_config(filters, "jwt_auth")?,
                "tenant_cache_key": wasm_config(filters, "tenant_request")?,
                "transform": wasm_config(filters, "transform")?,
            });
            let at = filters
                .iter()
                .position(|f| f["name"].as_str() == Some("jwt_auth"))
                .unwrap_or(0);
            filters.retain(|f| {
                !matches!(
                    f["name"].as_str(),
                    Some("jwt_auth" | "tenant_request" | "transform")
                )
            });
            let bundle = chain::wasm("gateway", &config)?;
            filters.insert(at, serde_yaml::to_value(&bundle)?);
        }
        other => anyhow::bail!("unknown gateway variant {other}"),
    }
    Ok(serde_yaml::to_string(&doc)?)
}

/// Answers the gateway listener completed, and how many of them were 2xx.
async fn answers(envoy: &Envoy) -> Result<(u64, u64)> {
    let all = envoy.stat("http.gateway.downstream_rq_completed").await?;
    let ok = envoy.stat("http.gateway.downstream_rq_2xx").await?;
    Ok((all.unwrap_or(0), ok.unwrap_or(0)))
}

/// The whole reference gateway (envoy/gateway.yaml: local limit, buffer, the wasm filters, the
/// rate-limit service over gRPC with Redis behind it, the router to a real upstream) with the
/// three wasm filters and with dist/gateway.wasm, against the same Envoy routing the same
/// request with no filter: saturation, then latency at half of each chain's saturation.
async fn gateway_section(load: &Load) -> Result<String> {
    use gateway_tests::demo::{gateway_vars, GatewayPaths, Ports};
    use gateway_tests::upstream::{Reply, Upstream};
    eprintln!("gateway: envoy/gateway.yaml, GET /api/users/42, 200 RS256 tokens over 10 tenants");
    let redis = gateway_tests::redis::RedisServer::start()?;
    let rls =
        gateway_tests::ratelimit::RateLimitService::start(&redis.url(), GATEWAY_BENCH_RLS, &[])
            .await?;
    rls.wait_ready(std::time::Duration::from_secs(10)).await?;
    let idp = gateway_tests::jwks::JwksServer::start(jwt_auth::testing::jwks(false)).await?;
    let upstream = Upstream::start(|r| {
        if r.path == "/healthz" {
            return Reply::text(200, "ok");
        }
        Reply::json(
            200,
            &json!({"service": "users", "path": r.path, "id": 42, "name": "Ada Lovelace",
                    "password_hash": "x", "internal": {"shard": 3}}),
        )
        .header("x-powered-by", "framework")
    })
    .await?;
    let up = upstream.port();
    let dir = tempfile::tempdir()?;
    let cert_dir = dir.path().join("tls");
    std::fs::create_dir(&cert_dir)?;
    gateway_tests::tools::tls_certificate(&cert_dir, "gateway.localhost")?;
    let cache_dir = dir.path().join("cache");
    std::fs::create_dir(&cache_dir)?;
    let ports = Ports {
        orders_v1: up,
        orders_v2: up,
        users: up,
        products: up,
        events: up,
        grpc: up,
        idp: idp.port(),
        rls_grpc: rls.grpc_port(),
        ..Ports::AUTO
    };
    let paths = GatewayPaths {
        cert_dir,
        cache_dir,
        access_log: "/dev/null".into(),
        wasm_dir: gateway_tests::tools::repo_root().join("dist"),
    };
    let mut template = EnvoyBuilder::from_repo_file("gateway", "envoy/gateway.yaml")?;
    for (k, v) in gateway_vars(&ports, &paths) {
        template = template.var(&k, v);
    }
    let rendered = template.render()?;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let tokens_file = dir.path().join("tokens.txt");
    let token_text = rs256_tokens(now, 200, |i, c| {
        c["iss"] = json!(gateway_tests::demo::ISSUER);
        c["sub"] = json!(format!("user-{i}"));
        c["tenant"] = json!(format!("tenant-{}", i % 10));
    });
    std::fs::write(&tokens_file, &token_text)?;
    let tokens: Vec<String> = token_text.lines().map(String::from).collect();
    let probe_token = tokens.first().cloned().unwrap_or_default();
    let script = token_rotation_script("/api/users/42", &tokens_file);
    let script_path = dir.path().join("rotate.lua");
    std::fs::write(&script_path, &script)?;

    let rows = [
        (
            "bare",
            "no filter: the same routes and clusters, router only",
        ),
        ("three", "envoy/gateway.yaml: three wasm filters"),
        (
            "bundle",
            "envoy/gateway.yaml with gateway.wasm in their place",
        ),
        (
            "no-rls",
            "envoy/gateway.yaml without the rate-limit call (three wasm filters)",
        ),
    ];
    let http = gateway_tests::envoy::client();
    let mut envoys = Vec::new();
    for (key, _) in rows {
        let envoy = EnvoyBuilder::new(key, &gateway_variant(&rendered, key)?)
            .concurrency(1)
            .start()
            .await?;
        // Hosts pass their first health check, jwt_auth has its keys: one request answers 200.
        let url = envoy.url("gateway", "/api/users/42");
        gateway_tests::wait::until(
            &format!("{key}: the gateway to answer"),
            std::time::Duration::from_secs(20),
            || {
                let req = http.get(&url).bearer_auth(&probe_token);
                async move { Ok(req.send().await?.status().is_success().then_some(())) }
            },
        )
        .await?;
        // Readiness probes may have met unhealthy hosts (503): count from here on.
        let before = answers(&envoy).await?;
        envoys.push((envoy, before));
    }
    let envoys_only: Vec<&Envoy> = envoys.iter().map(|(e, _)| e).collect();
    let url = |e: &Envoy| e.url("gateway", "/api/users/42");
    let mut t = Table::new(
        "The whole gateway through one Envoy worker (wrk -t1 -c16, keep-alive, real upstream, rate-limit service and Redis)",
    );
    let targets: Vec<_> = rows
        .iter()
        .zip(&envoys_only)
        .map(|((key, label), e)| (*key, *label, url(e)))
        .collect();
    saturate(&mut t, &targets, &script_path, load).await?;
    let mut out = t.render(&[
        ("bundle", "three", Some(1.5)),
        ("three", "bare", None),
        ("bundle", "bare", None),
    ]);
    let sat = |k: &str| t.get(k).map_or(0.0, |f| f.rps);
    out.push_str(PACED_HEADER);
    for (chain, rate) in [
        ("three", sat("three") / 2.0),
        ("bundle", sat("bundle") / 2.0),
    ] {
        let what = format!("half of ({chain}) saturation");
        let pair: Vec<_> = targets
            .iter()
            .filter(|(k, _, _)| *k == "bare" || *k == chain)
            .collect();
        out.push_str(&paced_rows(&what, rate, &pair, &tokens, load).await?);
    }
    // Every answer was the upstream's 200: nothing refused, limited or failed on the way.
    for ((key, _), (envoy, (all0, ok0))) in rows.iter().zip(&envoys) {
        let (all, ok) = answers(envoy).await?;
        let (all, ok) = (all - all0, ok - ok0);
        out.push_str(&format!("\n{key}: {ok} of {all} answers were 2xx"));
        if ok != all {
            let stats = http
                .get(envoy.admin_url(
                    "/stats?filter=downstream_rq_[45]xx|rq_timeout|wasmcustom.*(deny|reject|fail)",
                ))
                .send()
                .await?
                .text()
                .await?;
            eprintln!(
                "gateway: {key}: {} answers were not 2xx:\n{stats}",
                all - ok
            );
        }
    }
    out.push('\n');
    drop(envoys);
    Ok(out)
}

/// Runs `target/release/rls-load` against a service; returns its JSON report.
fn rls_load(
    grpc: std::net::SocketAddr,
    concurrency: u32,
    descriptors: u32,
    secs: u64,
) -> Result<Value> {
    let bin = gateway_tests::tools::repo_root().join("target/release/rls-load");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: run `make build`",
        bin.display()
    );
    let out = std::process::Command::new(bin)
        .args(["--addr", &grpc.to_string(), "--keys", "1000"])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--descriptors", &descriptors.to_string()])
        .args(["--duration", &secs.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "rls-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(
        report["errors"].as_u64() == Some(0),
        "rls-load saw errors: {report}"
    );
    Ok(report)
}

/// The raw Lua script driven by redis-benchmark at the same concurrency: the ceiling.
fn lua_ceiling(redis_port: u16, concurrency: u32, descriptors: u32) -> Result<f64> {
    let script = gateway_tests::tools::repo_root().join("ratelimit-service/bench/lua-baseline.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args([
            redis_port.to_string(),
            concurrency.to_string(),
            "1000".into(),
            descriptors.to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "lua-baseline.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["lua_calls_per_sec"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("no rate in {v}"))
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`: resident now, `VmHWM`: the peak).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn ratelimit_section(load: &Load) -> Result<String> {
    use gateway_tests::ratelimit::RateLimitService;
    use gateway_tests::redis::RedisServer;
    let secs = load.duration.as_secs();
    eprintln!("ratelimit: rls-load (1 thread, 4 HTTP/2 connections, 1,000 keys), {secs}s per row");
    let redis = RedisServer::start()?;
    let config = std::fs::read_to_string(
        gateway_tests::tools::repo_root().join("ratelimit-service/bench/config.yaml"),
    )?;
    let svc = RateLimitService::start(&redis.url(), &config, &[]).await?;
    let mut out = String::from(
        "### ratelimit-service (ShouldRateLimit, one Redis, concurrency 32 unless noted)\n\n\
         | row | configuration | decisions/s | p50 | p99 | p999 | ceiling (Lua via redis-benchmark) | ratio |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut row = |key: &str, label: &str, r: &Value, ceiling: Option<f64>| {
        let rate = r["decisions_per_sec"].as_f64().unwrap_or(0.0);
        eprintln!("  {key:>4}  {label:<58} {rate:>9.0} decisions/s");
        let (c, ratio) = match ceiling {
            Some(c) => (format!("{c:.0}"), format!("{:.2}", rate / c)),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {key} | {label} | {rate:.0} | {} us | {} us | {} us | {c} | {ratio} |\n",
            r["p50_us"], r["p99_us"], r["p999_us"]
        ));
        rate
    };
    let grpc = svc.grpc_addr();
    let c1 = lua_ceiling(redis.port(), 32, 1)?;
    let r1 = rls_load(grpc, 32, 1, secs)?;
    let sat1 = row("r1", "1 descriptor", &r1, Some(c1));
    let c3 = lua_ceiling(redis.port(), 32, 3)?;
    let r3 = rls_load(grpc, 32, 3, secs)?;
    row("r3", "3 descriptors", &r3, Some(c3));
    let half = rls_load(grpc, 2, 1, secs)?;
    let half_rate = row(
        "h1",
        "1 descriptor, concurrency 2 (latency well below saturation)",
        &half,
        None,
    );
    drop(svc);

    // Every key over its limit: answered from the local over-limit cache, no Redis call.
    let over = "domain: bench\ndescriptors:\n  - key: k1\n    rate_limit: { unit: hour, requests_per_unit: 1 }\n";
    let svc = RateLimitService::start(&redis.url(), over, &[]).await?;
    let _warm = rls_load(svc.grpc_addr(), 32, 1, 1)?;
    let cached = rls_load(svc.grpc_addr(), 32, 1, secs)?;
    let cached_rate = row(
        "lc",
        "1 descriptor, every key over limit (local cache)",
        &cached,
        None,
    );
    drop(svc);

    // The service's own ceiling: the same calls with no storage round trip at all (in-memory
    // buckets). No answer path, the local cache included, can beat it.
    let svc = RateLimitService::start(&redis.url(), &config, &["--store", "memory"]).await?;
    let mem = rls_load(svc.grpc_addr(), 32, 1, secs)?;
    let mem_rate = row(
        "m1",
        "1 descriptor, in-memory store (no Redis: gRPC + service only)",
        &mem,
        None,
    );
    drop(svc);

    // Memory with a 10,000-descriptor configuration.
    let mut big = String::from("domain: big\ndescriptors:\n");
    for i in 0..10_000 {
        big.push_str(&format!(
            "  - key: k{i}\n    rate_limit: {{ unit: minute, requests_per_unit: {} }}\n",
            10 + i
        ));
    }
    let svc = RateLimitService::start(&redis.url(), &big, &[]).await?;
    // Steady state: the allocator returns the config parser's garbage within milliseconds;
    // the peak (VmHWM) is reported too.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let rss = svc.pid().and_then(|p| status_kib(p, "VmRSS:")).unwrap_or(0);
    let peak = svc.pid().and_then(|p| status_kib(p, "VmHWM:")).unwrap_or(0);
    drop(svc);

    out.push_str(&format!(
        "\n- decisions/s vs the Lua ceiling (1 descriptor): {:.2} (target >= 0.6)\n\
         - at concurrency 2 ({half_rate:.0}/s, {:.0}% of the concurrency-32 rate): p99 {} us (target <= 1000 us at half of saturation)\n\
         - local over-limit cache vs the Redis path: {:.1}x (target >= 3x); the in-memory store, with no storage call at all, reaches {:.1}x: the gRPC and service path bound any answer\n\
         - RSS with a 10,000-descriptor config: {:.1} MB (target <= 50 MB; peak while parsing it {:.1} MB)\n",
        sat1 / c1,
        100.0 * half_rate / sat1,
        half["p99_us"],
        cached_rate / sat1,
        mem_rate / sat1,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
    ));
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
    if want("ratelimit") {
        report.push_str(&ratelimit_section(&load).await?);
        report.push('\n');
    }
    if want("jwt") {
        report.push_str(&jwt_section(&load).await?);
        report.push('\n');
    }
    if want("filters") {
        report.push_str(&filters_section(&load).await?);
        report.push('\n');
    }
    if want("tenant") {
        report.push_str(&tenant_section(&load).await?);
        report.push('\n');
    }
    if want("chain") {
        report.push_str(&chain_section(&load).await?);
        report.push('\n');
    }
    if want("gateway") {
        report.push_str(&gateway_section(&load).await?);
        report.push('\n');
    }
    println!("{report}");
    Ok(())
}
