//! `envoy/istio/`: the Istio manifests parse as Kubernetes objects, and what they configure is
//! accepted by the component that reads it — each WasmPlugin's `pluginConfig` by its filter's own
//! parser (the function the module calls in `on_configure`), the rate-limit ConfigMap by
//! ratelimit-service's loader — and the names that tie them together agree: the JWKS and
//! rate-limit clusters with the ServiceEntry and Service they come from, the route names with the
//! VirtualService, the descriptors with the rate-limit config, and the configs with
//! `envoy/gateway.yaml`, which they mirror.

use gateway_tests::{template, tools};
use jwt_auth::config::{FilterConfig, KeySource};
use ratelimit_service::config::Config as RateLimitConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tenant_cache_key::{Stage, TenantPolicy};
use transform::{ResponseHeadersMode, Transformer};

/// One YAML document of one manifest file.
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn str_at(&self, pointer: &str) -> &str {
        self.value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: {} has no string at {pointer}", self.file, self.id()))
    }

    fn at(&self, pointer: &str) -> &Value {
        self.value
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{}: {} has nothing at {pointer}", self.file, self.id()))
    }

    fn list(&self, pointer: &str) -> &[Value] {
        self.at(pointer)
            .as_array()
            .unwrap_or_else(|| panic!("{}: {} has no list at {pointer}", self.file, self.id()))
    }

    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or("")
    }

    fn id(&self) -> String {
        format!("{} {}/{}", self.kind(), self.namespace(), self.name())
    }
}

fn istio_dir() -> PathBuf {
    tools::repo_root().join("envoy/istio")
}

/// Every manifest file (kustomization.yaml is not a Kubernetes object), sorted.
fn manifest_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(istio_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .filter(|n| n != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

fn yaml_documents(file: &str, text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .map(|(i, doc)| {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{file}: document {i} is not valid YAML: {e}"));
            assert!(!value.is_null(), "{file}: document {i} is empty");
            value
        })
        .collect()
}

fn load() -> Vec<Doc> {
    let mut docs = Vec::new();
    for file in manifest_files() {
        let text = std::fs::read_to_string(istio_dir().join(&file)).unwrap();
        for value in yaml_documents(&file, &text) {
            docs.push(Doc {
                file: file.clone(),
                value,
            });
        }
    }
    assert!(!docs.is_empty(), "no manifests under envoy/istio/");
    docs
}

fn of_kind<'a>(docs: &'a [Doc], kind: &str) -> Vec<&'a Doc> {
    docs.iter().filter(|d| d.kind() == kind).collect()
}

fn find<'a>(docs: &'a [Doc], kind: &str, namespace: &str, name: &str) -> &'a Doc {
    docs.iter()
        .find(|d| d.kind() == kind && d.namespace() == namespace && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} under envoy/istio/"))
}

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

/// `outbound|<port>|<subset>|<host>` -> (port, subset, host).
fn outbound_cluster(name: &str) -> (u16, String, String) {
    let parts: Vec<&str> = name.split('|').collect();
    assert_eq!(
        parts.len(),
        4,
        "{name:?} is not an Istio outbound cluster name (outbound|<port>|<subset>|<host>)"
    );
    assert_eq!(parts[0], "outbound", "{name:?}: not an outbound cluster");
    let port = parts[1]
        .parse()
        .unwrap_or_else(|_| panic!("{name:?}: port {:?} is not a number", parts[1]));
    (port, parts[2].to_string(), parts[3].to_string())
}

/// `envoy/gateway.yaml`, every placeholder given a neutral value, as JSON.
fn reference_gateway() -> Value {
    let text = std::fs::read_to_string(tools::repo_root().join("envoy/gateway.yaml")).unwrap();
    let vars: BTreeMap<String, String> = template::placeholders(&text)
        .into_iter()
        .map(|name| (name, "0".to_string()))
        .collect();
    let rendered = template::render(&text, &vars).unwrap();
    let mut docs = yaml_documents("envoy/gateway.yaml", &rendered);
    assert_eq!(docs.len(), 1, "envoy/gateway.yaml: one document expected");
    docs.remove(0)
}

/// The typed_config of the reference gateway's HTTP filter `name` (first listener).
fn reference_filter(gateway: &Value, name: &str) -> Value {
    let filters = gateway
        .pointer(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(Value::as_array)
        .expect("envoy/gateway.yaml: no http_filters in the first listener");
    filters
        .iter()
        .find(|f| f["name"] == json!(name))
        .map(|f| f["typed_config"].clone())
        .unwrap_or_else(|| panic!("envoy/gateway.yaml has no HTTP filter named {name}"))
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

/// Every `rate_limits` list anywhere in `v` (route entries of the reference gateway).
fn rate_limit_lists(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "rate_limits" && child.is_array() {
                    out.push(child.clone());
                }
                rate_limit_lists(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| rate_limit_lists(i, out)),
        _ => {}
    }
}

/// The one EnvoyFilter patch inserting Envoy's rate-limit filter.
fn ratelimit_filter_patch(docs: &[Doc]) -> (&Doc, &Value) {
    let mut found = Vec::new();
    for doc in of_kind(docs, "EnvoyFilter") {
        for patch in doc.list("/spec/configPatches") {
            if patch["applyTo"] == json!("HTTP_FILTER")
                && patch.pointer("/patch/value/name")
                    == Some(&json!("envoy.filters.http.ratelimit"))
            {
                found.push((doc, patch));
            }
        }
    }
    assert_eq!(
        found.len(),
        1,
        "expected exactly one EnvoyFilter patch adding envoy.filters.http.ratelimit"
    );
    found[0]
}

/// Route name -> rate_limits of every HTTP_ROUTE patch.
fn route_rate_limits(docs: &[Doc]) -> BTreeMap<String, Value> {
    let mut routes = BTreeMap::new();
    for doc in of_kind(docs, "EnvoyFilter") {
        for patch in doc.list("/spec/configPatches") {
            if patch["applyTo"] != json!("HTTP_ROUTE") {
                continue;
            }
            assert_eq!(patch.pointer("/match/context"), Some(&json!("GATEWAY")));
            assert_eq!(patch.pointer("/patch/operation"), Some(&json!("MERGE")));
            let name = patch
                .pointer("/match/routeConfiguration/vhost/route/name")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{}: an HTTP_ROUTE patch names no route", doc.id()))
                .to_string();
            let limits = patch
                .pointer("/patch/value/route/rate_limits")
                .unwrap_or_else(|| panic!("{}: route {name} patch has no rate_limits", doc.id()))
                .clone();
            assert!(
                routes.insert(name.clone(), limits).is_none(),
                "route {name} patched twice"
            );
        }
    }
    routes
}

fn container_env<'a>(deployment: &'a Doc, name: &str) -> &'a str {
    deployment
        .list("/spec/template/spec/containers/0/env")
        .iter()
        .find(|e| e["name"] == json!(name))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("{}: no env {name}", deployment.id()))
}

#[test]
fn every_manifest_is_a_named_kubernetes_object_listed_in_the_kustomization() {
    let docs = load();
    let expected_api = |kind: &str| match kind {
        "WasmPlugin" => Some("extensions.istio.io/v1alpha1"),
        "EnvoyFilter" => Some("networking.istio.io/v1alpha3"),
        "ServiceEntry" | "DestinationRule" | "Gateway" | "VirtualService" => {
            Some("networking.istio.io/v1")
        }
        "Deployment" => Some("apps/v1"),
        "Service" | "ConfigMap" | "Namespace" => Some("v1"),
        _ => None,
    };
    let dns_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let mut seen = BTreeSet::new();
    for doc in &docs {
        let kind = doc.str_at("/kind");
        let api = doc.str_at("/apiVersion");
        assert_eq!(
            Some(api),
            expected_api(kind),
            "{}: unexpected apiVersion/kind {api} {kind}",
            doc.file
        );
        let name = doc.str_at("/metadata/name");
        assert!(dns_name(name), "{}: bad metadata.name {name:?}", doc.file);
        if kind == "Namespace" {
            assert!(doc.value["metadata"].get("namespace").is_none());
        } else {
            let ns = doc.str_at("/metadata/namespace");
            assert!(dns_name(ns), "{}: bad namespace {ns:?}", doc.id());
        }
        assert!(
            seen.insert(doc.id()),
            "{}: {} declared twice",
            doc.file,
            doc.id()
        );
    }
    // Every namespace used is Istio's or declared here.
    let declared: BTreeSet<&str> = of_kind(&docs, "Namespace")
        .iter()
        .map(|d| d.name())
        .collect();
    for doc in &docs {
        let ns = doc.namespace();
        assert!(
            ns.is_empty() || ns == "istio-system" || declared.contains(ns),
            "{}: namespace {ns} is not declared in envoy/istio/",
            doc.id()
        );
    }

    let text = std::fs::read_to_string(istio_dir().join("kustomization.yaml")).unwrap();
    let kustomization = &yaml_documents("kustomization.yaml", &text)[0];
    assert_eq!(kustomization["kind"], json!("Kustomization"));
    assert_eq!(
        kustomization["apiVersion"],
        json!("kustomize.config.k8s.io/v1beta1")
    );
    assert!(
        kustomization.get("namespace").is_none(),
        "a kustomization namespace would move the istio-system objects"
    );
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml: no resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = manifest_files().into_iter().collect();
    assert_eq!(
        listed, files,
        "kustomization.yaml must list exactly the manifest files"
    );
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
        let url = doc.str_at("/spec/url");
        assert!(
            ["oci://", "file://", "https://"]
                .iter()
                .any(|s| url.starts_with(s)),
            "{}: url {url} must be oci://, file:// or https://",
            doc.id()
        );
        assert!(
            url.contains(plugin),
            "{}: url {url} does not name {plugin}",
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
fn ratelimit_filter_sits_before_the_router_and_calls_the_service_by_its_cluster() {
    let docs = load();
    let (doc, patch) = ratelimit_filter_patch(&docs);
    assert_eq!(
        doc.at("/spec/workloadSelector/labels"),
        &json!({ "istio": "ingressgateway" })
    );
    assert_eq!(patch.pointer("/match/context"), Some(&json!("GATEWAY")));
    assert_eq!(
        patch.pointer("/match/listener/filterChain/filter/name"),
        Some(&json!("envoy.filters.network.http_connection_manager"))
    );
    assert_eq!(
        patch.pointer("/match/listener/filterChain/filter/subFilter/name"),
        Some(&json!("envoy.filters.http.router"))
    );
    assert_eq!(
        patch.pointer("/patch/operation"),
        Some(&json!("INSERT_BEFORE"))
    );
    let config = &patch["patch"]["value"]["typed_config"];
    assert_eq!(
        config["@type"],
        json!("type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit")
    );
    assert_eq!(config["domain"], json!("edge"));
    assert_eq!(config["failure_mode_deny"], json!(false));
    assert_eq!(
        config["rate_limit_service"]["transport_api_version"],
        json!("V3")
    );
    // Everything but the service address is envoy/gateway.yaml's.
    let reference = reference_filter(&reference_gateway(), "envoy.filters.http.ratelimit");
    for key in [
        "@type",
        "domain",
        "stage",
        "request_type",
        "timeout",
        "failure_mode_deny",
        "enable_x_ratelimit_headers",
    ] {
        assert_eq!(config[key], reference[key], "ratelimit filter: {key}");
    }

    let grpc = &config["rate_limit_service"]["grpc_service"]["envoy_grpc"];
    let cluster = grpc["cluster_name"].as_str().unwrap();
    let (port, subset, host) = outbound_cluster(cluster);
    assert_eq!(subset, "");
    // Without it, Envoy sends the cluster name as :authority and the service refuses the call.
    assert_eq!(
        grpc["authority"],
        json!(host),
        "envoy_grpc.authority must be the service host"
    );
    let labels: Vec<&str> = host.split('.').collect();
    assert_eq!(
        labels.get(2..),
        Some(&["svc", "cluster", "local"][..]),
        "{host} is not a Service FQDN"
    );
    let service = find(&docs, "Service", labels[1], labels[0]);
    let service_port = service
        .list("/spec/ports")
        .iter()
        .find(|p| p["port"] == json!(port))
        .unwrap_or_else(|| panic!("{}: no port {port}", service.id()));
    // Istio builds an HTTP/2 cluster only for a port it knows to be gRPC or HTTP/2.
    let name = service_port["name"].as_str().unwrap_or("");
    let app_protocol = service_port["appProtocol"].as_str().unwrap_or("");
    assert!(
        ["grpc", "http2"].contains(&app_protocol)
            || name == "grpc"
            || name.starts_with("grpc-")
            || name.starts_with("http2"),
        "{}: port {port} is not declared gRPC/HTTP/2",
        service.id()
    );

    // The Service reaches the Deployment's gRPC listener.
    let selector = service.at("/spec/selector").as_object().unwrap();
    let deployment = of_kind(&docs, "Deployment")
        .into_iter()
        .find(|d| {
            d.namespace() == service.namespace()
                && selector.iter().all(|(k, v)| {
                    d.value
                        .pointer(&format!("/spec/template/metadata/labels/{k}"))
                        == Some(v)
                })
        })
        .unwrap_or_else(|| panic!("{} selects no Deployment", service.id()));
    let grpc_addr = container_env(deployment, "RLS_GRPC_ADDR");
    let target = service_port["targetPort"].as_u64().unwrap();
    assert_eq!(
        grpc_addr.rsplit(':').next(),
        Some(target.to_string().as_str()),
        "{}: RLS_GRPC_ADDR {grpc_addr} vs targetPort {target}",
        deployment.id()
    );
    assert!(
        grpc_addr.starts_with("0.0.0.0:") || grpc_addr.starts_with("[::]:"),
        "{}: RLS_GRPC_ADDR {grpc_addr} must listen on every interface",
        deployment.id()
    );
}

#[test]
fn route_descriptors_match_the_gateway_routes_and_the_rate_limit_config() {
    let docs = load();
    let routes = route_rate_limits(&docs);

    // Every VirtualService route is limited, and every patch names a real route.
    let mut route_names = BTreeSet::new();
    for vs in of_kind(&docs, "VirtualService") {
        for http in vs.list("/spec/http") {
            let name = http["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: an http route has no name", vs.id()));
            route_names.insert(name.to_string());
            // Istio names an Envoy route <route>.<match> when a match is named.
            for m in http["match"].as_array().into_iter().flatten() {
                assert!(
                    m.get("name").is_none(),
                    "{}: named match in {name}",
                    vs.id()
                );
            }
        }
    }
    assert!(!route_names.is_empty(), "no VirtualService routes");
    let patched: BTreeSet<String> = routes.keys().cloned().collect();
    assert_eq!(
        patched, route_names,
        "rate-limit patches vs VirtualService routes"
    );

    // The descriptors are envoy/gateway.yaml's, route by route.
    let mut reference = Vec::new();
    rate_limit_lists(&reference_gateway(), &mut reference);
    assert!(!reference.is_empty());
    for (name, limits) in &routes {
        assert!(
            reference.contains(limits),
            "route {name}: rate_limits differ from every route of envoy/gateway.yaml"
        );
        let generic: Vec<&Value> = limits
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["actions"].as_array().unwrap())
            .filter_map(|a| a.get("generic_key"))
            .collect();
        assert_eq!(
            generic,
            [&json!({ "descriptor_key": "route", "descriptor_value": name })],
            "route {name}: its generic key"
        );
    }

    // The ConfigMap loads in ratelimit-service and has a limit for every descriptor sent.
    let (_, patch) = ratelimit_filter_patch(&docs);
    let domain_name = patch["patch"]["value"]["typed_config"]["domain"]
        .as_str()
        .unwrap();
    let deployment = find(&docs, "Deployment", "edgegate", "ratelimit");
    let config_dir = container_env(deployment, "RLS_CONFIG");
    let mount = deployment
        .list("/spec/template/spec/containers/0/volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == json!(config_dir))
        .unwrap_or_else(|| panic!("nothing mounted at RLS_CONFIG {config_dir}"));
    let volume = deployment
        .list("/spec/template/spec/volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let config_map_name = volume
        .pointer("/configMap/name")
        .and_then(Value::as_str)
        .unwrap();
    let config_map = find(&docs, "ConfigMap", deployment.namespace(), config_map_name);
    let sources: Vec<(String, String)> = config_map
        .at("/data")
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with(".yaml") || k.ends_with(".yml"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert!(!sources.is_empty(), "{}: no *.yaml key", config_map.id());
    let config = RateLimitConfig::from_sources(&sources)
        .unwrap_or_else(|e| panic!("ratelimit-service refuses {}: {e}", config_map.id()));
    let domain = config
        .domain(domain_name)
        .unwrap_or_else(|| panic!("{}: no domain {domain_name}", config_map.id()));
    for (name, limits) in &routes {
        for entry in limits.as_array().unwrap() {
            for action in entry["actions"].as_array().unwrap() {
                let (key, value) = if let Some(h) = action.get("request_headers") {
                    (h["descriptor_key"].as_str().unwrap(), "acme")
                } else if let Some(g) = action.get("generic_key") {
                    (
                        g["descriptor_key"].as_str().unwrap(),
                        g["descriptor_value"].as_str().unwrap(),
                    )
                } else {
                    panic!("route {name}: unexpected action {action}");
                };
                assert!(
                    domain.find([(key, value)].into_iter()).is_some(),
                    "route {name}: no limit for descriptor [{key}={value}]"
                );
            }
        }
    }
    // And the lookup can say no.
    assert!(domain
        .find([("route", "no-such-route")].into_iter())
        .is_none());
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
    assert_eq!(
        transform, expected,
        "transform's pluginConfig differs from envoy/gateway.yaml beyond the mesh change"
    );

    // jwt_auth: the reference config with the documented mesh differences applied.
    let (jwt, _) = plugin_config(wasm_plugin(&docs, "jwt_auth"));
    let mut expected = reference_wasm_config(&gateway, "jwt_auth");
    expected["bypass_cors_preflight"] = json!(true);
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
        e["remote_jwks"]["cluster"] = provider["remote_jwks"]["cluster"].clone();
        e["remote_jwks"]["uri"] = provider["remote_jwks"]["uri"].clone();
        e["tenant_header"] = json!("x-jwt-tenant");
    }
    assert_eq!(
        jwt, expected,
        "jwt_auth's pluginConfig differs from envoy/gateway.yaml beyond the mesh changes"
    );
}
