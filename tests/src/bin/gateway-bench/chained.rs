//! The three filters in a row against the bundle, paced latency rows.

use super::*;

/// The gateway's wasm chain (envoy/gateway.yaml's jwt_auth -> tenant request stage ->
/// transform) as three filters and as dist/bundle.wasm, against the same Envoy with no filter:
/// throughput at saturation, then latency at fixed rates.
pub(super) async fn chain_section(load: &Load) -> Result<String> {
    eprintln!(
        "chain: 200 RS256 tokens over 10 tenants, GET /api/users/42 (transform strips 2 fields)"
    );
    let dir = tempfile::tempdir()?;
    let (tokens, script_path) = chain_tokens(dir.path())?;
    let rows = chain_rows()?;
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
        ("bundle-routes", "bundle", Some(1.0)),
        ("bundle-names", "bundle", Some(1.0)),
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
    out.push_str(&format!(
        "Policy by route: one read of the route's edgegate metadata costs {:.2} us of worker \
         time, one of its name {:.2} us ((pass-meta|pass-name - pass) / 10); against the \
         matcher-based bundle, policies from the metadata {:+.1} us, by the route's name \
         {:+.1} us.\n",
        (per_req("pass-meta") - per_req("pass")) / 10.0,
        (per_req("pass-name") - per_req("pass")) / 10.0,
        per_req("bundle-routes") - per_req("bundle"),
        per_req("bundle-names") - per_req("bundle"),
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

/// The chain rows' load: 200 RS256 tokens over 10 tenants (in `dir`), and the wrk script that
/// sends `GET /api/users/42` with each in turn.
pub(super) fn chain_tokens(dir: &std::path::Path) -> Result<(Vec<String>, std::path::PathBuf)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let tokens_file = dir.join("tokens.txt");
    let token_text = rs256_tokens(now, 200, |i, c| {
        c["sub"] = json!(format!("user-{i}"));
        c["tenant"] = json!(format!("tenant-{}", i % 10));
    });
    std::fs::write(&tokens_file, &token_text)?;
    let tokens: Vec<String> = token_text.lines().map(String::from).collect();
    let script = token_rotation_script("/api/users/42", &tokens_file);
    let script_path = dir.join("rotate.lua");
    std::fs::write(&script_path, &script)?;
    Ok((tokens, script_path))
}

/// Every chain row (key, label, HTTP filters): none, three, the bundles, then each stage alone
/// and the pass-through probes.
pub(super) fn chain_rows() -> Result<Vec<(&'static str, &'static str, Vec<Value>)>> {
    use jwt_auth::testing::jwks;
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
            "bundle.wasm: the same three stages in one filter",
            vec![chain::wasm("bundle", &stages::bundle(&keys))?],
        ),
        (
            "bundle-routes",
            "bundle.wasm, each stage's policy from the route's metadata (one property read)",
            vec![chain::wasm("bundle", &stages::bundle_by_route(&keys))?],
        ),
        (
            "bundle-names",
            "bundle.wasm, each stage's policy bound to the route's name",
            vec![chain::wasm("bundle", &stages::bundle_by_route_name(&keys))?],
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
        (
            "pass-name",
            "pass-through reading the route's name 10 times",
            vec![chain::wasm(
                "passthrough",
                &json!({
                    "get_property": 10,
                    "property_path": ["xds", "route_name"]
                }),
            )?],
        ),
        (
            "pass-meta",
            "pass-through reading the route's edgegate metadata 10 times",
            vec![chain::wasm(
                "passthrough",
                &json!({
                    "get_property": 10,
                    "property_path": ["xds", "route_metadata", "filter_metadata", "edgegate"]
                }),
            )?],
        ),
    ];
    Ok(rows.into_iter().chain(breakdown).collect())
}
