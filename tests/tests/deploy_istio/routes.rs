//! Policies bound to VirtualService routes: Istio names each Envoy route after the
//! VirtualService (`<http.name>`, `<http.name>.<match.name>`) and lets no one set route
//! metadata, so the WasmPlugins map route names to policies. Checked statically (every route
//! bound, every binding a route) and through real Envoy on the route table Istio renders from
//! ingress.yaml, with the WasmPlugins' own configurations in the mesh's order.

use crate::prelude::*;
use crate::support::{istio_routes, load, of_kind, Doc, IstioRoute};
use gateway_tests::envoy::EnvoyBuilder;
use gateway_tests::gateway::token;
use gateway_tests::jwks::JwksServer;
use gateway_tests::upstream::Upstream;
use gateway_tests::{chain, wait};
use std::time::Duration;

fn plugin_config(docs: &[Doc], plugin: &str) -> Value {
    of_kind(docs, "WasmPlugin")
        .into_iter()
        .find(|d| d.str_at("/spec/pluginName") == plugin)
        .unwrap_or_else(|| panic!("no WasmPlugin {plugin}"))
        .at("/spec/pluginConfig")
        .clone()
}

#[test]
fn every_istio_route_names_a_requirement_and_every_binding_names_a_route() {
    let docs = load();
    let names: BTreeSet<String> = istio_routes(&docs).into_iter().map(|r| r.name).collect();
    let jwt = plugin_config(&docs, "jwt_auth");
    let bound: BTreeSet<String> = jwt["routes"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        bound, names,
        "jwt_auth's routes vs the VirtualService's route names"
    );
    for (route, requirement) in jwt["routes"].as_object().unwrap() {
        let r = requirement.as_str().unwrap();
        assert!(
            r == "public" || jwt["requirements"].get(r).is_some(),
            "route {route}: requirement {r} is not defined"
        );
    }
    // Writes need orders:write wherever they reach the orders service.
    for (route, requirement) in jwt["routes"].as_object().unwrap() {
        let write = route.ends_with(".write");
        assert_eq!(
            requirement == "orders_write",
            write,
            "route {route}: {requirement}"
        );
    }
    let transform = plugin_config(&docs, "transform");
    for route in transform["routes"].as_object().unwrap().keys() {
        assert!(
            names.contains(route),
            "transform binds {route}, which no route is named"
        );
    }
}

/// The cluster Istio routes a destination to.
fn cluster_of(route: &IstioRoute) -> String {
    let d = &route.http["route"][0]["destination"];
    format!(
        "outbound|{}||{}",
        d["port"]["number"],
        d["host"].as_str().unwrap()
    )
}

/// An Envoy route as Istio's `TranslateRoute` builds it: its name, its match (uri, method), the
/// VirtualService's config path as its only metadata, and the destination's cluster.
fn envoy_route(route: &IstioRoute) -> Value {
    let uri = &route.matches["uri"];
    let mut m = if let Some(p) = uri["exact"].as_str() {
        json!({ "path": p })
    } else {
        json!({ "prefix": uri["prefix"].as_str().unwrap_or("/") })
    };
    if let Some(regex) = route.matches["method"]["regex"].as_str() {
        m["headers"] =
            json!([{ "name": ":method", "string_match": { "safe_regex": { "regex": regex } } }]);
    }
    json!({
        "name": route.name,
        "match": m,
        "metadata": { "filter_metadata": { "istio": {
            "config": "/apis/networking.istio.io/v1/namespaces/edgegate/virtual-service/edgegate-api"
        } } },
        "route": { "cluster": cluster_of(route), "timeout": "8s" },
    })
}

/// The bootstrap: one listener with the route table, jwt_auth and transform as the mesh runs
/// them (transform without the header hold), one static cluster per destination (all to the
/// one upstream here) and the JWKS cluster.
fn bootstrap(
    routes: &[Value],
    filters: Vec<Value>,
    clusters: &BTreeSet<String>,
    ports: (u16, u16),
) -> String {
    let cluster = |name: &str, port: u16| {
        json!({
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } } } }] }] },
        })
    };
    let mut all: Vec<Value> = clusters.iter().map(|c| cluster(c, ports.0)).collect();
    all.push(cluster("jwks", ports.1));
    let config = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": { "name": "http.80", "virtual_hosts": [
                            { "name": "*:80", "domains": ["*"], "routes": routes }
                        ] },
                        "http_filters": filters,
                    },
                }] }],
            }],
            "clusters": all,
        },
    });
    serde_yaml::to_string(&config).unwrap()
}

/// A WasmPlugin's filter as Istio writes it: the module at `path` in V8, its `pluginConfig` as
/// the configuration, and no `allow_on_headers_stop_iteration` (a WasmPlugin cannot set it).
fn mesh_filter(plugin: &str, path: &str, config: &Value) -> Value {
    let mut filter = chain::wasm_at(plugin, path, &config.to_string());
    if let Some(c) = filter["typed_config"]["config"].as_object_mut() {
        c.remove("allow_on_headers_stop_iteration");
    }
    filter
}

#[tokio::test]
async fn the_route_table_istio_renders_decides_by_route_name_through_envoy() {
    let dist = |module: &str| tools::wasm(module).unwrap().display().to_string();
    check_route_table(&load(), &dist).await;
}

/// Runs the route table of `docs` through Envoy with the WasmPlugins in the mesh's order
/// (jwt_auth, tenant_cache_key, transform), each with its `pluginConfig` and its module loaded
/// from `module_path(pluginName)`, and checks each route's decision. The OCI test runs it on the
/// modules it pulled back from a registry.
pub async fn check_route_table(docs: &[Doc], module_path: &dyn Fn(&str) -> String) {
    let routes = istio_routes(docs);
    // A route added to the VirtualService and bound to nothing (Istio would name it `admin`).
    let admin = IstioRoute {
        name: "admin".into(),
        http: routes[0].http.clone(),
        matches: json!({ "uri": { "prefix": "/api/admin/" } }),
    };
    let table: Vec<Value> = routes.iter().chain([&admin]).map(envoy_route).collect();
    let clusters: BTreeSet<String> = routes.iter().map(cluster_of).collect();

    let idp = JwksServer::start(jwt_auth::testing::jwks(false))
        .await
        .unwrap();
    let upstream = Upstream::echo().await.unwrap();
    let mut jwt = plugin_config(docs, "jwt_auth");
    for provider in jwt["providers"].as_object_mut().unwrap().values_mut() {
        provider["issuer"] = json!("https://idp.edgegate.localhost");
        if provider.get("introspection").is_some() {
            provider["introspection"]["cluster"] = json!("jwks");
            provider["introspection"]["uri"] =
                json!("http://idp.edgegate.localhost/oauth2/introspect");
        } else {
            provider["remote_jwks"]["cluster"] = json!("jwks");
            provider["remote_jwks"]["uri"] =
                json!("http://idp.edgegate.localhost/.well-known/jwks.json");
        }
    }
    let plugin = |name: &str, config: &Value| mesh_filter(name, &module_path(name), config);
    let filters = vec![
        plugin("jwt_auth", &jwt),
        plugin("tenant_cache_key", &plugin_config(docs, "tenant_cache_key")),
        plugin("transform", &plugin_config(docs, "transform")),
        chain::router(),
    ];
    let text = bootstrap(&table, filters, &clusters, (upstream.port(), idp.port()));
    let envoy = EnvoyBuilder::new("istio-routes", &text)
        .start()
        .await
        .unwrap();
    let reader = token("user-1", "acme", "orders:read");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // The first request waits for jwt_auth's keys.
    let url = envoy.url("ingress", "/api/users/1");
    wait::until("jwt_auth's keys", Duration::from_secs(10), || {
        let (client, url, reader) = (client.clone(), url.clone(), reader.clone());
        async move {
            let r = client.get(&url).bearer_auth(&reader).send().await?;
            Ok((r.status() == 200).then_some(()))
        }
    })
    .await
    .unwrap();

    // (method, path, with the reader's token: status, the route Istio named)
    let cases = [
        ("GET", "/api/orders", 200, "orders.read"),
        ("GET", "/api/orders/7", 200, "orders.read"),
        ("POST", "/api/orders", 403, "orders.write"),
        ("PURGE", "/api/orders/7", 403, "orders.write"),
        ("GET", "/api/orders/reports/q", 200, "reports.read"),
        ("DELETE", "/api/orders/reports/q", 403, "reports.write"),
        ("GET", "/api/users/1", 200, "users"),
        ("GET", "/api/products/1", 200, "products"),
        ("GET", "/api/admin/1", 403, "admin"),
    ];
    for (method, path, status, route) in cases {
        let url = envoy.url("ingress", path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = client
            .request(m.clone(), &url)
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        let got = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{method} {path} (route {route}): {body}");
        if route == "admin" {
            assert_eq!(
                body["message"],
                "no authentication policy applies to this route"
            );
        } else if status == 403 {
            assert_eq!(body["error"], "insufficient_scope", "{method} {path}");
        } else if route == "users" {
            // transform's rule, bound to the route name `users`, set its header upstream.
            assert_eq!(
                body["headers"]["x-gateway-route"],
                json!(["users"]),
                "{body}"
            );
            // tenant_cache_key turned jwt_auth's tenant claim header into x-tenant-id.
            assert_eq!(body["headers"]["x-tenant-id"], json!(["acme"]), "{body}");
        } else {
            assert!(
                body["headers"]["x-gateway-route"].is_null(),
                "{route}: {body}"
            );
        }
        // Without a token every bound route is a 401; the unbound one stays a 403.
        let anonymous = client
            .request(m, &url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(
            anonymous,
            if route == "admin" { 403 } else { 401 },
            "{method} {path}"
        );
    }
}
