//! The whole reference gateway (envoy/gateway.yaml) with its leased ratelimit stage, with the
//! same stage on exact limits (a lease per request, like a ShouldRateLimit call), and without it.

use super::*;

/// Limits no benchmark reaches, in `mode` (`exact`: a lease of one token per request, a Redis
/// round trip each; `leased`: leases of up to 1,000 tokens), none refuses.
fn bench_limits(mode: &str) -> String {
    let extra = match mode {
        "leased" => ", mode: leased, lease_size: 1000, lease_ttl: 30s",
        // RLQS grants once per 5 s report: a lease must cover 5 s of a bucket's traffic.
        "rlqs" => ", mode: leased, lease_size: 1000000, lease_ttl: 30s",
        _ => "",
    };
    let limit = |key: &str| {
        format!("  - key: {key}\n    rate_limit: {{ unit: hour, requests_per_unit: 1000000000{extra} }}\n")
    };
    format!(
        "domain: edge\ndescriptors:\n{}{}{}",
        limit("tenant"),
        limit("consumer"),
        limit("route")
    )
}

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

/// Envoy's native `rate_limit_quota` filter in place of the wasm stage, on the stage's
/// cluster: one bucket per (tenant, consumer), as the stage's first two descriptors. Fail-open
/// (`ALLOW_ALL` before the first assignment): the row measures cost, tests/tests/rlqs.rs
/// exactness.
fn rlqs_filter(cluster: &str) -> Result<serde_yaml::Value> {
    let header = |name: &str| {
        json!({"custom_value": {"name": name, "typed_config": {
            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
            "header_name": name}}})
    };
    let settings = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rate_limit_quota.v3.RateLimitQuotaBucketSettings",
        "bucket_id_builder": {"bucket_id_builder": {
            "tenant": header("x-tenant-id"), "consumer": header("x-user-id")}},
        "reporting_interval": "5s",
        "no_assignment_behavior": {"fallback_rate_limit": {"blanket_rule": "ALLOW_ALL"}},
    });
    Ok(serde_yaml::to_value(json!({
        "name": "envoy.filters.http.rate_limit_quota",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rate_limit_quota.v3.RateLimitQuotaFilterConfig",
            "rlqs_server": {"envoy_grpc": {"cluster_name": cluster}},
            "domain": "edge",
            "bucket_matchers": {"on_no_match": {"action": {
                "name": "rate_limit_quota_bucket", "typed_config": settings}}},
        }
    }))?)
}

/// envoy/gateway.yaml ("leased", or "exact" when rendered against the exact service), with its
/// four wasm filters replaced by dist/bundle.wasm configured with their own configurations
/// ("bundle"; "bundle-no-rls": three stages, no ratelimit), without the ratelimit stage
/// ("no-rls"), with no HTTP filter but the router ("bare": the same Envoy routing the same
/// request), with Envoy's `rate_limit_quota` filter in the stage's place ("rlqs", rendered
/// against the RLQS service), or with Envoy's own filters in the wasm stages' places
/// ("native", [`native_in_place`]). TLS listener dropped.
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
        "leased" | "exact" => {}
        "bare" => filters.retain(|f| f["name"].as_str() == Some("envoy.filters.http.router")),
        "no-rls" => filters.retain(|f| f["name"].as_str() != Some("ratelimit")),
        "rlqs" => {
            let cluster = wasm_config(filters, "ratelimit")?["cluster"]
                .as_str()
                .unwrap_or("ratelimit")
                .to_string();
            let at = filters
                .iter()
                .position(|f| f["name"].as_str() == Some("ratelimit"))
                .ok_or_else(|| anyhow::anyhow!("gateway.yaml has no ratelimit filter"))?;
            filters[at] = rlqs_filter(&cluster)?;
        }
        "bundle" => bundle_in_place(filters, true)?,
        "native" => {
            native_in_place(filters)?;
            add_native_rate_limits(&mut doc)?;
        }
        "native-no-rls" => {
            native_in_place(filters)?;
            filters.retain(|f| f["name"].as_str() != Some("envoy.filters.http.ratelimit"));
        }
        "bundle-no-rls" => bundle_in_place(filters, false)?,
        other => anyhow::bail!("unknown gateway variant {other}"),
    }
    Ok(serde_yaml::to_string(&doc)?)
}

/// Replaces the three (or, `with_ratelimit`, four) wasm filters by dist/bundle.wasm configured
/// with their own configurations; without the ratelimit stage its filter goes too.
fn bundle_in_place(filters: &mut Vec<serde_yaml::Value>, with_ratelimit: bool) -> Result<()> {
    let mut config = json!({
        "jwt_auth": wasm_config(filters, "jwt_auth")?,
        "tenant_cache_key": wasm_config(filters, "tenant_request")?,
        "transform": wasm_config(filters, "transform")?,
    });
    if with_ratelimit {
        config["ratelimit"] = wasm_config(filters, "ratelimit")?;
    }
    let at = filters
        .iter()
        .position(|f| f["name"].as_str() == Some("jwt_auth"))
        .unwrap_or(0);
    filters.retain(|f| {
        !matches!(
            f["name"].as_str(),
            Some("jwt_auth" | "tenant_request" | "transform" | "ratelimit")
        )
    });
    let bundle = chain::wasm("bundle", &config)?;
    filters.insert(at, serde_yaml::to_value(&bundle)?);
    Ok(())
}

/// The native anchor: Envoy's own filters doing the wasm stages' work where one exists, in
/// their places. jwt_authn (the same provider, keys and a verified-token cache as large as
/// jwt_auth's) writes `x-user-id`, `x-org-id` and `x-tenant-id` from the claims, which stands
/// in for the tenant stage's claim source; header_mutation does transform's header edits (the
/// JSON body strip has no native equivalent and is left out); Envoy's `ratelimit` filter asks
/// ratelimit-service (ShouldRateLimit, one call per request) for the same three descriptors.
fn native_in_place(filters: &mut Vec<serde_yaml::Value>) -> Result<()> {
    let jwt = wasm_config(filters, "jwt_auth")?;
    let idp = &jwt["providers"]["idp"];
    let keys = &idp["remote_jwks"];
    let authn = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "idp": {
                "issuer": idp["issuer"],
                "audiences": idp["audiences"],
                "remote_jwks": {
                    "http_uri": { "uri": keys["uri"], "cluster": keys["cluster"], "timeout": "2s" },
                    "cache_duration": "600s",
                },
                "from_headers": [{ "name": "authorization", "value_prefix": "Bearer " }],
                "claim_to_headers": [
                    { "header_name": "x-user-id", "claim_name": "sub" },
                    { "header_name": "x-org-id", "claim_name": "org.id" },
                    { "header_name": "x-tenant-id", "claim_name": "tenant" },
                ],
                "jwt_cache_config": { "jwt_cache_size": 10000 },
            } },
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" } }],
        }
    });
    let headers = json!({
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": [{ "append": {
                    "header": { "key": "x-gateway-route", "value": "users" },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" } }],
                "response_mutations": [
                    { "remove": "server" },
                    { "remove": "x-powered-by" },
                    { "append": { "header": { "key": "x-gateway", "value": "edgegate" },
                                  "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" } },
                ],
            }
        }
    });
    let cluster = wasm_config(filters, "ratelimit")?["cluster"]
        .as_str()
        .unwrap_or("ratelimit")
        .to_string();
    let limit = json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": "edge",
            "timeout": "0.25s",
            "failure_mode_deny": false,
            "rate_limit_service": {
                "grpc_service": { "envoy_grpc": { "cluster_name": cluster } },
                "transport_api_version": "V3",
            },
        }
    });
    let native = [
        ("jwt_auth", authn),
        ("transform", headers),
        ("ratelimit", limit),
    ];
    for (name, filter) in native {
        let at = filters
            .iter()
            .position(|f| f["name"].as_str() == Some(name))
            .ok_or_else(|| anyhow::anyhow!("gateway.yaml has no {name} filter"))?;
        filters[at] = serde_yaml::to_value(filter)?;
    }
    filters.retain(|f| f["name"].as_str() != Some("tenant_request"));
    Ok(())
}

/// The native ratelimit filter's descriptors, on every virtual host: the tenant, the consumer
/// and the route, as the wasm stage's `standard` limit (its route name action keys on the
/// route; the bench's one route is `users`).
fn add_native_rate_limits(doc: &mut serde_yaml::Value) -> Result<()> {
    let header = |name: &str, key: &str| {
        json!({ "actions": [{ "request_headers": {
            "header_name": name, "descriptor_key": key, "skip_if_absent": true } }] })
    };
    let limits = serde_yaml::to_value(json!([
        header("x-tenant-id", "tenant"),
        header("x-user-id", "consumer"),
        { "actions": [{ "generic_key": { "descriptor_key": "route", "descriptor_value": "users" } }] },
    ]))?;
    let hosts = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"]
        .as_sequence_mut()
        .ok_or_else(|| anyhow::anyhow!("gateway.yaml: no virtual hosts on the first listener"))?;
    for host in hosts {
        host["rate_limits"] = limits.clone();
    }
    Ok(())
}

/// Lease calls ratelimit-service answered so far.
async fn lease_calls(rls: &gateway_tests::ratelimit::RateLimitService) -> f64 {
    let name = "ratelimit_lease_requests_total";
    rls.metric(name, &[]).await.ok().flatten().unwrap_or(0.0)
}

/// Answers the gateway listener completed, and how many of them were 2xx.
async fn answers(envoy: &Envoy) -> Result<(u64, u64)> {
    let all = envoy.stat("http.gateway.downstream_rq_completed").await?;
    let ok = envoy.stat("http.gateway.downstream_rq_2xx").await?;
    Ok((all.unwrap_or(0), ok.unwrap_or(0)))
}

/// The whole reference gateway (envoy/gateway.yaml: local limit, buffer, the wasm filters, the
/// rate-limit service over gRPC with Redis behind it, the router to a real upstream) with the
/// three wasm filters and with dist/bundle.wasm, against the same Envoy routing the same
/// request with no filter: saturation, then latency at half of each chain's saturation.
pub(super) async fn gateway_section(load: &Load) -> Result<String> {
    use gateway_tests::demo::{gateway_vars, GatewayPaths, Ports};
    use gateway_tests::upstream::{Reply, Upstream};
    eprintln!("gateway: envoy/gateway.yaml, GET /api/users/42, 200 RS256 tokens over 10 tenants");
    let redis = gateway_tests::redis::RedisServer::start()?;
    let start_rls = |mode: &'static str| {
        let url = redis.url();
        async move {
            let rls =
                gateway_tests::ratelimit::RateLimitService::start(&url, &bench_limits(mode), &[])
                    .await?;
            rls.wait_ready(std::time::Duration::from_secs(10)).await?;
            anyhow::Ok(rls)
        }
    };
    let rls = start_rls("leased").await?;
    let rls_exact = start_rls("exact").await?;
    let rls_quota = start_rls("rlqs").await?;
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
        dist_dir: gateway_tests::tools::repo_root().join("dist"),
    };
    let render = |ports: &Ports| -> Result<String> {
        let mut template = EnvoyBuilder::from_repo_file("gateway", "envoy/gateway.yaml")?;
        for (k, v) in gateway_vars(ports, &paths) {
            template = template.var(&k, v);
        }
        template.render()
    };
    let rendered = render(&ports)?;
    let rendered_exact = render(&Ports {
        rls_grpc: rls_exact.grpc_port(),
        ..ports
    })?;
    let rendered_rlqs = render(&Ports {
        rls_grpc: rls_quota.grpc_port(),
        ..ports
    })?;

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
        (
            "no-rls",
            "envoy/gateway.yaml without its ratelimit stage (three wasm filters)",
        ),
        (
            "exact",
            "envoy/gateway.yaml, limits exact: a lease per request (as a ShouldRateLimit call)",
        ),
        (
            "leased",
            "envoy/gateway.yaml: four wasm filters, limits leased",
        ),
        (
            "bundle",
            "envoy/gateway.yaml with bundle.wasm in their place (limits leased)",
        ),
        (
            "bundle-no-rls",
            "envoy/gateway.yaml with bundle.wasm of three stages, no ratelimit stage",
        ),
        (
            "rlqs",
            "envoy/gateway.yaml, Envoy's rate_limit_quota (RLQS) in the stage's place",
        ),
        (
            "native",
            "envoy/gateway.yaml with Envoy's own filters in the wasm stages' places (jwt_authn, \
             header_mutation, ratelimit: ShouldRateLimit per request; no body strip)",
        ),
        (
            "native-no-rls",
            "the native row without its ratelimit filter (jwt_authn, header_mutation)",
        ),
    ];
    let http = gateway_tests::envoy::client();
    let mut envoys = Vec::new();
    for (key, _) in rows {
        let base = match key {
            "exact" | "native" | "native-no-rls" => &rendered_exact,
            "rlqs" => &rendered_rlqs,
            _ => &rendered,
        };
        let envoy = EnvoyBuilder::new(key, &gateway_variant(base, key)?)
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
    let leases_before = lease_calls(&rls).await;
    saturate(&mut t, &targets, &script_path, load).await?;
    let leases = lease_calls(&rls).await - leases_before;
    let mut out = t.render(&[
        ("leased", "no-rls", Some(0.9)),
        ("exact", "no-rls", None),
        ("leased", "exact", None),
        ("bundle", "leased", None),
        ("bundle", "bundle-no-rls", Some(0.9)),
        ("rlqs", "no-rls", None),
        ("rlqs", "leased", None),
        ("no-rls", "bare", None),
        ("bundle", "native", Some(0.8)),
        ("leased", "native", None),
        ("exact", "native", None),
        ("bundle-no-rls", "native-no-rls", None),
        ("no-rls", "native-no-rls", None),
    ]);
    // Lease calls against requests admitted by the leased rows (leased and bundle share the
    // service): the target is at most one call per 50 requests.
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3.0);
    let seconds = (load.duration + load.warmup).as_secs_f64() * rounds;
    let admitted: f64 = ["leased", "bundle"]
        .iter()
        .filter_map(|k| t.get(k))
        .map(|f| f.rps * seconds)
        .sum();
    out.push_str(&format!(
        "\nlease calls during the leased rows: {leases:.0} for ~{admitted:.0} requests \
         (1 per {:.0}; target: at most 1 per 50). Targets: leased >= 0.9x no-rls req/s, and \
         leased's added p99 over no-rls <= 0.5 ms at half saturation (rows below).\n",
        admitted / leases.max(1.0)
    ));
    let sat = |k: &str| t.get(k).map_or(0.0, |f| f.rps);
    out.push_str(PACED_HEADER);
    for (chain, rate) in [
        ("leased", sat("leased") / 2.0),
        ("exact", sat("exact") / 2.0),
        ("bundle", sat("bundle") / 2.0),
        ("rlqs", sat("rlqs") / 2.0),
        ("native", sat("native") / 2.0),
    ] {
        let what = format!("half of ({chain}) saturation, added over no-rls");
        let pair: Vec<_> = targets
            .iter()
            .filter(|(k, _, _)| *k == "no-rls" || *k == chain)
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
