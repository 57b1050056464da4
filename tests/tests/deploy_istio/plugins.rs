//! The WasmPlugins: order and fail-closed, each pluginConfig through its parser and against gateway.yaml, the JWKS cluster.

use crate::prelude::*;
use crate::support::{load, of_kind, outbound_cluster, reference_filter, reference_gateway, Doc};

fn wasm_plugin<'a>(docs: &'a [Doc], plugin_name: &str) -> &'a Doc {
    let found: Vec<&Doc> = of_kind(docs, "WasmPlugin")
        .into_iter()
        .filter(|d| d.value.pointer("/spec/pluginName") == Some(&json!(plugin_name)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one WasmPlugin with pluginName {plugin_name}"
    );
    found[0]
}

/// The bytes Envoy hands the module: Istio serializes `pluginConfig` (a protobuf Struct) to JSON
/// and passes it as the plugin configuration.
fn plugin_config(doc: &Doc) -> (Value, Vec<u8>) {
    let config = doc.at("/spec/pluginConfig").clone();
    assert!(
        config.is_object(),
        "{}: pluginConfig is not a map",
        doc.id()
    );
    let bytes = serde_json::to_vec(&config).unwrap();
    (config, bytes)
}

/// The JSON plugin configuration of one of the reference gateway's wasm filters.
fn reference_wasm_config(gateway: &Value, name: &str) -> Value {
    let filter = reference_filter(gateway, name);
    let text = filter
        .pointer("/config/configuration/value")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("envoy/gateway.yaml: {name} has no configuration value"));
    serde_json::from_str(text).unwrap()
}

#[test]
fn wasm_plugins_run_in_the_gateway_order_and_fail_closed() {
    let docs = load();
    assert_eq!(
        of_kind(&docs, "WasmPlugin").len(),
        3,
        "one WasmPlugin per filter"
    );
    // (pluginName, phase): jwt_auth before Istio's authn, tenant_cache_key after it and before
    // RBAC, transform after RBAC and before the rate-limit filter.
    let expected = [
        ("jwt_auth", "AUTHN"),
        ("tenant_cache_key", "AUTHZ"),
        ("transform", "STATS"),
    ];
    for (plugin, phase) in expected {
        let doc = wasm_plugin(&docs, plugin);
        assert_eq!(doc.str_at("/spec/phase"), phase, "{}", doc.id());
        // A missing auth or tenant filter must not open the API; transform strips fields.
        assert_eq!(
            doc.str_at("/spec/failStrategy"),
            "FAIL_CLOSE",
            "{}",
            doc.id()
        );
        assert_eq!(
            doc.at("/spec/selector/matchLabels"),
            &json!({ "istio": "ingressgateway" }),
            "{}",
            doc.id()
        );
        assert!(
            doc.value.pointer("/spec/targetRefs").is_none(),
            "{}: selector or targetRefs, not both",
            doc.id()
        );
        assert_eq!(doc.str_at("/spec/type"), "HTTP", "{}", doc.id());
        // The image `make oci` publishes: <registry>/<module>:<version>, pinned by digest once
        // published (`make oci REGISTRY=...` rewrites the url).
        let url = doc.str_at("/spec/url");
        let (tag, digest) = url.split_once('@').unwrap_or((url, ""));
        assert!(
            tag.starts_with("oci://")
                && tag.ends_with(&format!("/{plugin}:{}", gateway_tests::oci::VERSION)),
            "{}: url {url} is not oci://<registry>/{plugin}:<workspace version>",
            doc.id()
        );
        assert_eq!(
            gateway_tests::oci::module_of_url(url),
            Some(plugin),
            "{}",
            doc.id()
        );
        assert!(
            digest.is_empty()
                || digest
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
            "{}: {digest:?} is not a sha256 digest",
            doc.id()
        );
        let pull = doc.str_at("/spec/imagePullPolicy");
        assert!(
            pull == "IfNotPresent" || pull == "Always",
            "{}: imagePullPolicy {pull}",
            doc.id()
        );
    }

    // Istio's order: by phase (AUTHN, AUTHZ, STATS, then UNSPECIFIED_PHASE), then by priority,
    // highest first.
    let rank = |phase: &str| match phase {
        "AUTHN" => 0,
        "AUTHZ" => 1,
        "STATS" => 2,
        "UNSPECIFIED_PHASE" => 3,
        other => panic!("unknown phase {other}"),
    };
    let mut chain: Vec<(i32, i64, String)> = of_kind(&docs, "WasmPlugin")
        .iter()
        .map(|d| {
            (
                rank(d.str_at("/spec/phase")),
                -d.value
                    .pointer("/spec/priority")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                d.str_at("/spec/pluginName").to_string(),
            )
        })
        .collect();
    chain.sort();
    let order: Vec<&str> = chain.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(order, ["jwt_auth", "tenant_cache_key", "transform"]);
}

#[test]
fn each_plugin_config_is_accepted_by_its_filters_own_parser() {
    let docs = load();

    // Struct holds numbers as doubles: integers must survive the trip exactly.
    fn check_numbers(v: &Value, at: &str) {
        match v {
            Value::Number(n) => assert!(
                n.as_f64()
                    .is_some_and(|f| f.fract() != 0.0 || f.abs() <= 9_007_199_254_740_992.0),
                "{at}: {n} does not survive a protobuf Struct"
            ),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| check_numbers(x, &format!("{at}[{i}]"))),
            Value::Object(m) => m
                .iter()
                .for_each(|(k, x)| check_numbers(x, &format!("{at}.{k}"))),
            _ => {}
        }
    }

    let jwt_doc = wasm_plugin(&docs, "jwt_auth");
    let (jwt_raw, jwt_bytes) = plugin_config(jwt_doc);
    check_numbers(&jwt_raw, "jwt_auth");
    let jwt = FilterConfig::parse(&jwt_bytes)
        .unwrap_or_else(|e| panic!("jwt_auth refuses its pluginConfig: {e}"));
    assert!(!jwt.providers.is_empty());
    // Istio's CORS filter runs after every WasmPlugin: preflights must get past jwt_auth.
    assert!(
        jwt.bypass_cors_preflight,
        "jwt_auth must let CORS preflights through in the mesh"
    );

    let tenant_doc = wasm_plugin(&docs, "tenant_cache_key");
    let (tenant_raw, tenant_bytes) = plugin_config(tenant_doc);
    check_numbers(&tenant_raw, "tenant_cache_key");
    let tenant = TenantPolicy::new(&tenant_bytes)
        .unwrap_or_else(|e| panic!("tenant_cache_key refuses its pluginConfig: {e}"));
    // No Envoy cache filter and no upstream filter in the mesh: one instance does both stages.
    assert_eq!(tenant.stage(), Stage::Both);
    assert_eq!(tenant.tenant_header(), "x-tenant-id");

    let transform_doc = wasm_plugin(&docs, "transform");
    let (transform_raw, transform_bytes) = plugin_config(transform_doc);
    check_numbers(&transform_raw, "transform");
    let transform = Transformer::new(&transform_bytes)
        .unwrap_or_else(|e| panic!("transform refuses its pluginConfig: {e}"));
    // A WasmPlugin cannot set allow_on_headers_stop_iteration: holding response headers would
    // stall every response with a body on the strip routes.
    assert_eq!(
        transform.response_headers_mode(),
        ResponseHeadersMode::Stream,
        "transform must not hold response headers in the mesh"
    );

    // The parsers are strict, so acceptance above means something: a stray field is refused.
    let with_stray = |raw: &Value| {
        let mut v = raw.clone();
        v["not_a_field"] = json!(true);
        serde_json::to_vec(&v).unwrap()
    };
    assert!(FilterConfig::parse(&with_stray(&jwt_raw)).is_err());
    assert!(TenantPolicy::new(&with_stray(&tenant_raw)).is_err());
    assert!(Transformer::new(&with_stray(&transform_raw)).is_err());

    // The tenant's claim source reads the header jwt_auth sets from the verified claim, and that
    // header is not the one tenant_cache_key owns (it would be stripped as a forgery).
    let claim_headers: Vec<&str> = tenant_raw["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.pointer("/claim/header").and_then(Value::as_str))
        .collect();
    assert!(
        !claim_headers.is_empty(),
        "tenant_cache_key has no claim source"
    );
    for header in claim_headers {
        assert_ne!(header, tenant.tenant_header());
        for provider in &jwt.providers {
            assert!(
                provider
                    .claim_headers
                    .iter()
                    .any(|c| c.header == header && c.claim == "tenant"),
                "jwt_auth provider {} does not set {header} from the tenant claim",
                provider.name
            );
        }
    }
}

#[test]
fn jwks_cluster_is_the_outbound_cluster_of_the_idp_service_entry() {
    let docs = load();
    let doc = wasm_plugin(&docs, "jwt_auth");
    let (raw, bytes) = plugin_config(doc);
    let jwt = FilterConfig::parse(&bytes).unwrap();
    let mut remotes = 0;
    for provider in &jwt.providers {
        // The revocation call's :authority is its cluster name; `|` makes it invalid.
        if let Some(revocation) = &provider.revocation {
            assert!(
                !revocation.cluster.contains('|'),
                "provider {}: revocation through {} would send an invalid :authority",
                provider.name,
                revocation.cluster
            );
        }
        let KeySource::Remote(remote) = &provider.keys else {
            continue;
        };
        remotes += 1;
        let (port, subset, host) = outbound_cluster(&remote.cluster);
        assert_eq!(subset, "", "{}: no subset expected", remote.cluster);
        // The fetch's :authority comes from `uri`: it must be the cluster's host.
        assert_eq!(
            remote.authority, host,
            "remote_jwks.uri and cluster disagree"
        );

        let entry = of_kind(&docs, "ServiceEntry")
            .into_iter()
            .find(|se| {
                se.list("/spec/hosts").contains(&json!(host))
                    && se
                        .list("/spec/ports")
                        .iter()
                        .any(|p| p["number"] == json!(port))
            })
            .unwrap_or_else(|| panic!("no ServiceEntry for {host}:{port} ({})", remote.cluster));
        assert_eq!(
            entry.namespace(),
            doc.namespace(),
            "{}: must be visible to the gateway (its namespace)",
            entry.id()
        );
        assert_eq!(entry.str_at("/spec/location"), "MESH_EXTERNAL");

        let uri = raw["providers"][&provider.name]["remote_jwks"]["uri"]
            .as_str()
            .unwrap_or("");
        if uri.starts_with("https://") {
            // The wasm call is plain HTTP: the cluster has to originate TLS.
            let rule = of_kind(&docs, "DestinationRule")
                .into_iter()
                .find(|dr| dr.str_at("/spec/host") == host)
                .unwrap_or_else(|| panic!("no DestinationRule originating TLS to {host}"));
            assert_eq!(rule.namespace(), doc.namespace(), "{}", rule.id());
            let tls = rule
                .list("/spec/trafficPolicy/portLevelSettings")
                .iter()
                .find(|s| s.pointer("/port/number") == Some(&json!(port)))
                .and_then(|s| s.get("tls"))
                .unwrap_or_else(|| panic!("{}: no tls for port {port}", rule.id()));
            assert_eq!(tls["mode"], json!("SIMPLE"), "{}", rule.id());
            assert_eq!(tls["sni"], json!(host), "{}", rule.id());
        }
    }
    assert!(remotes > 0, "no provider fetches a remote JWKS");
}

#[test]
fn plugin_configs_mirror_envoy_gateway_yaml() {
    let docs = load();
    let gateway = reference_gateway();

    // transform: the reference config, without holding response headers (the WasmPlugin cannot
    // set allow_on_headers_stop_iteration).
    let (transform, _) = plugin_config(wasm_plugin(&docs, "transform"));
    let mut expected = reference_wasm_config(&gateway, "transform");
    expected["response_headers_mode"] = json!("stream");
    // Istio routes carry no edgegate metadata: the rule is bound to the route's name.
    expected["routes"] = json!({ "users": "users" });
    assert_eq!(
        transform, expected,
        "transform's pluginConfig differs from envoy/gateway.yaml beyond the mesh change"
    );

    // jwt_auth: the reference config with the documented mesh differences applied.
    let (jwt, _) = plugin_config(wasm_plugin(&docs, "jwt_auth"));
    let mut expected = reference_wasm_config(&gateway, "jwt_auth");
    expected["bypass_cors_preflight"] = json!(true);
    // The requirements bound to route names (checked against the routes in routes.rs).
    expected["routes"] = jwt["routes"].clone();
    let providers = jwt["providers"].as_object().unwrap();
    assert_eq!(
        providers.keys().collect::<Vec<_>>(),
        expected["providers"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        "jwt_auth providers"
    );
    for (name, provider) in providers {
        let e = &mut expected["providers"][name];
        e["issuer"] = provider["issuer"].clone();
        // The key source's call goes to the mesh's outbound cluster of the same IdP.
        let source = ["remote_jwks", "introspection"]
            .into_iter()
            .find(|k| provider.get(*k).is_some())
            .unwrap_or_else(|| panic!("provider {name}: no remote_jwks or introspection"));
        e[source]["cluster"] = provider[source]["cluster"].clone();
        e[source]["uri"] = provider[source]["uri"].clone();
        e["tenant_header"] = json!("x-jwt-tenant");
    }
    assert_eq!(
        jwt, expected,
        "jwt_auth's pluginConfig differs from envoy/gateway.yaml beyond the mesh changes"
    );
}
