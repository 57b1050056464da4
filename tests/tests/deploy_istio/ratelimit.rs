//! Rate limiting: the filter patch before the router, its service cluster, and the route descriptors against both configs.

use crate::prelude::*;
use crate::support::{
    istio_routes, load, of_kind, outbound_cluster, reference_filter, reference_gateway, Doc,
};

fn find<'a>(docs: &'a [Doc], kind: &str, namespace: &str, name: &str) -> &'a Doc {
    docs.iter()
        .find(|d| d.kind() == kind && d.namespace() == namespace && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} under envoy/istio/"))
}

/// The configuration of envoy/gateway.yaml's ratelimit stage (the wasm filter `ratelimit`).
fn reference_stage() -> Value {
    let filter = reference_filter(&reference_gateway(), "ratelimit");
    let text = filter
        .pointer("/config/configuration/value")
        .and_then(Value::as_str)
        .expect("envoy/gateway.yaml: the ratelimit stage has no configuration");
    serde_json::from_str(text).expect("the ratelimit stage's configuration is JSON")
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
    // The mesh keeps Envoy's native filter (a ShouldRateLimit call per request: the exact
    // path); its settings are those of envoy/gateway.yaml's leased ratelimit stage.
    let stage = reference_stage();
    assert_eq!(config["domain"], stage["domain"], "domain");
    let fails_open = stage["failure_mode"] == json!("allow");
    assert_eq!(
        config["failure_mode_deny"],
        json!(!fails_open),
        "failure mode"
    );
    let timeout_ms = stage["timeout_ms"].as_u64().unwrap();
    assert_eq!(
        config["timeout"],
        json!(format!("{}s", timeout_ms as f64 / 1000.0))
    );
    assert_eq!(
        config["enable_x_ratelimit_headers"],
        json!("DRAFT_VERSION_03")
    );

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

    // Every VirtualService route is limited, and every patch names a real route, by the name
    // Istio gives it (`<http.name>` or `<http.name>.<match.name>`).
    let route_names: BTreeSet<String> = istio_routes(&docs).into_iter().map(|r| r.name).collect();
    assert!(!route_names.is_empty(), "no VirtualService routes");
    let patched: BTreeSet<String> = routes.keys().cloned().collect();
    assert_eq!(
        patched, route_names,
        "rate-limit patches vs VirtualService routes"
    );

    // The descriptors are those envoy/gateway.yaml's ratelimit stage builds, route by route:
    // its tenant and consumer header actions, then the route's name as `route`.
    let stage = reference_stage();
    let stage_routes: BTreeSet<&str> = stage["routes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let descriptors = stage["limits"]["standard"]["descriptors"]
        .as_array()
        .unwrap();
    assert_eq!(
        descriptors[2],
        json!([{ "route_name": { "descriptor_key": "route" } }])
    );
    for (name, limits) in &routes {
        let limits = limits.as_array().unwrap();
        assert_eq!(limits.len(), 3, "route {name}: tenant, consumer, route");
        for i in 0..2 {
            assert_eq!(
                limits[i]["actions"], descriptors[i],
                "route {name}: descriptor {i} differs from envoy/gateway.yaml's stage"
            );
        }
        // A read and a write match of one VirtualService route share its limits.
        let route = name.split('.').next().unwrap_or_default();
        assert_eq!(
            limits[2]["actions"],
            json!([{ "generic_key": { "descriptor_key": "route", "descriptor_value": route } }]),
            "route {name}: its generic key"
        );
        assert!(
            stage_routes.contains(route),
            "route {name} is not limited by envoy/gateway.yaml's stage"
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
