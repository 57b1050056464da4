//! The shipped `envoy/gateway.yaml` read back as data, so tests enumerate what the config says
//! (its routes, its filters, its owned-header list) instead of a copy of it that could drift:
//! a route or a filter added later is covered by the same checks.

use crate::template;
use crate::tools;
use serde_json::Value;
use serde_yaml::Value as Yaml;
use std::collections::BTreeMap;

/// The parsed gateway template (placeholders rendered with neutral sample values).
pub struct GatewayConfig {
    root: Yaml,
}

/// One route of the gateway's route table, with the virtual host it belongs to.
#[derive(Debug, Clone)]
pub struct Route {
    pub vhost: String,
    /// The first domain of the virtual host (`*` for the catch-all).
    pub domain: String,
    pub raw: Yaml,
}

impl GatewayConfig {
    pub fn load() -> GatewayConfig {
        let path = tools::repo_root().join("envoy/gateway.yaml");
        let text = std::fs::read_to_string(&path).expect("envoy/gateway.yaml");
        let root = parse_template(&text).expect("gateway.yaml renders to YAML");
        GatewayConfig { root }
    }

    /// The connection manager of the plain listener (the TLS listener shares it by anchor).
    pub fn hcm(&self) -> &Yaml {
        &self.root["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]
    }

    /// The HTTP filters in chain order.
    pub fn http_filters(&self) -> Vec<&Yaml> {
        seq(&self.hcm()["http_filters"])
    }

    pub fn filter_names(&self) -> Vec<String> {
        self.http_filters()
            .iter()
            .map(|f| str_of(&f["name"]).to_string())
            .collect()
    }

    /// A filter by name (the listener chain).
    pub fn filter(&self, name: &str) -> &Yaml {
        self.http_filters()
            .into_iter()
            .find(|f| str_of(&f["name"]) == name)
            .unwrap_or_else(|| panic!("no http filter named {name}"))
    }

    /// The JSON plugin configuration of a wasm filter in the listener chain.
    pub fn wasm_config(&self, name: &str) -> Value {
        wasm_json(self.filter(name))
    }

    /// The JSON plugin configuration of a wasm upstream filter of a cluster.
    pub fn upstream_wasm_config(&self, cluster: &str, name: &str) -> Value {
        let filters = &self.cluster(cluster)["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"];
        let filter = seq(filters)
            .into_iter()
            .find(|f| str_of(&f["name"]) == name)
            .unwrap_or_else(|| panic!("cluster {cluster} has no upstream filter {name}"));
        wasm_json(filter)
    }

    pub fn clusters(&self) -> Vec<&Yaml> {
        seq(&self.root["static_resources"]["clusters"])
    }

    pub fn cluster(&self, name: &str) -> &Yaml {
        self.clusters()
            .into_iter()
            .find(|c| str_of(&c["name"]) == name)
            .unwrap_or_else(|| panic!("no cluster named {name}"))
    }

    /// The request headers the owned-headers filter removes, lower-cased.
    pub fn owned_headers(&self) -> Vec<String> {
        removed(&self.filter("owned_headers")["typed_config"]["mutations"]["request_mutations"])
    }

    /// The request trailers the owned-headers filter removes, lower-cased.
    pub fn owned_trailers(&self) -> Vec<String> {
        removed(
            &self.filter("owned_headers")["typed_config"]["mutations"]
                ["request_trailers_mutations"],
        )
    }

    /// Every route of every virtual host, in table order.
    pub fn routes(&self) -> Vec<Route> {
        let mut out = Vec::new();
        for vhost in seq(&self.hcm()["route_config"]["virtual_hosts"]) {
            let domain = str_of(seq(&vhost["domains"])[0]).to_string();
            for route in seq(&vhost["routes"]) {
                out.push(Route {
                    vhost: str_of(&vhost["name"]).to_string(),
                    domain: domain.clone(),
                    raw: route.clone(),
                });
            }
        }
        out
    }

    /// Every header a rate-limit action reads (`request_headers.header_name`): the ratelimit
    /// stage's descriptors, and any route-level `rate_limits` left.
    pub fn descriptor_headers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let stage = self.wasm_config("ratelimit");
        let mut rules = stage["rules"].as_array().cloned().unwrap_or_default();
        rules.extend(
            stage["limits"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, l)| l.clone()),
        );
        let stage_actions = rules
            .iter()
            .flat_map(|r| r["descriptors"].as_array().cloned().unwrap_or_default())
            .flat_map(|d| d.as_array().cloned().unwrap_or_default());
        for action in stage_actions {
            if let Some(name) = action["request_headers"]["header_name"].as_str() {
                out.push(name.to_ascii_lowercase());
            }
        }
        for route in self.routes() {
            for limit in seq(&route.raw["route"]["rate_limits"]) {
                for action in seq(&limit["actions"]) {
                    let name = &action["request_headers"]["header_name"];
                    if !name.is_null() {
                        out.push(str_of(name).to_ascii_lowercase());
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The route names the ratelimit stage limits: the names its `routes` binds to a limit
    /// (and the deprecated rules' `routes` lists).
    pub fn limited_route_names(&self) -> Vec<String> {
        let stage = self.wasm_config("ratelimit");
        let mut names: Vec<String> = (stage["rules"].as_array().into_iter().flatten())
            .flat_map(|r| r["routes"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        let bound = stage["routes"].as_object().into_iter().flatten();
        names.extend(bound.filter(|(_, l)| *l != "none").map(|(n, _)| n.clone()));
        names.sort();
        names.dedup();
        names
    }
}

impl Route {
    /// The route's `name` (what the ratelimit stage's `route_name` action reads).
    pub fn name(&self) -> Option<String> {
        self.raw["name"].as_str().map(str::to_string)
    }

    /// Answered by Envoy itself (no upstream).
    /// True for a route that matches only over a verified client certificate
    /// (`tls_context`): the mTLS listener's partner routes.
    pub fn needs_client_cert(&self) -> bool {
        !self.raw["match"]["tls_context"].is_null()
    }

    pub fn is_direct(&self) -> bool {
        !self.raw["direct_response"].is_null()
    }

    /// The upstream cluster, or for a weighted route its first cluster.
    pub fn cluster(&self) -> Option<String> {
        let route = &self.raw["route"];
        if let Some(c) = route["cluster"].as_str() {
            return Some(c.to_string());
        }
        seq(&route["weighted_clusters"]["clusters"])
            .first()
            .map(|c| str_of(&c["name"]).to_string())
    }

    /// The path prefix the route matches (`prefix` or `path_separated_prefix`; an exact
    /// `path` is its own prefix).
    pub fn prefix(&self) -> String {
        let m = &self.raw["match"];
        m["path_separated_prefix"]
            .as_str()
            .or_else(|| m["prefix"].as_str())
            .or_else(|| m["path"].as_str())
            .unwrap_or_else(|| panic!("route without a prefix or path: {:?}", self.raw))
            .to_string()
    }

    /// A request path this route matches: its exact `path`, or its prefix and one more segment.
    pub fn sample_path(&self) -> String {
        match self.raw["match"]["path"].as_str() {
            Some(path) => path.to_string(),
            None => format!("{}/{}", self.prefix().trim_end_matches('/'), "sample-1"),
        }
    }

    /// The host to send for this route (`*` becomes `gateway.localhost`).
    pub fn host(&self) -> String {
        if self.domain == "*" {
            "gateway.localhost".to_string()
        } else {
            self.domain.clone()
        }
    }

    /// The header conditions of the match that are exact values (`:method` included).
    pub fn exact_headers(&self) -> Vec<(String, String)> {
        seq(&self.raw["match"]["headers"])
            .into_iter()
            .filter_map(|h| {
                let value = h["string_match"]["exact"].as_str()?;
                Some((str_of(&h["name"]).to_string(), value.to_string()))
            })
            .collect()
    }

    /// A gRPC route (`match.grpc`).
    pub fn is_grpc(&self) -> bool {
        !self.raw["match"]["grpc"].is_null()
    }

    /// A REST route Envoy's gRPC-JSON transcoder turns into gRPC calls (the route turns the
    /// filter on).
    pub fn is_transcoded(&self) -> bool {
        let entry = &self.raw["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"];
        !entry.is_null() && entry["disabled"].as_bool() != Some(true)
    }

    /// A route that accepts WebSocket upgrades.
    pub fn is_upgrade(&self) -> bool {
        seq(&self.raw["route"]["upgrade_configs"])
            .iter()
            .any(|u| u["enabled"].as_bool() == Some(true))
    }

    /// The match has a header condition on content-length (the early 413 route).
    pub fn matches_on_content_length(&self) -> bool {
        seq(&self.raw["match"]["headers"])
            .iter()
            .any(|h| str_of(&h["name"]) == "content-length")
    }

    /// The shared cache is turned on for this route (the filter is off by default).
    pub fn enables_cache(&self) -> bool {
        let entry = &self.raw["typed_per_filter_config"]["envoy.filters.http.cache"];
        !entry.is_null() && entry["disabled"].as_bool() != Some(true)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {}",
            self.vhost,
            serde_json::to_string(&self.raw["match"]).unwrap_or_default()
        )
    }
}

/// An Envoy config template as YAML, its placeholders rendered with neutral sample values
/// (`1` for ports, `x` for the rest).
pub(crate) fn parse_template(text: &str) -> anyhow::Result<Yaml> {
    let vars: BTreeMap<String, String> = template::placeholders(text)
        .into_iter()
        .map(|name| {
            let value = if name.ends_with("_PORT") { "1" } else { "x" };
            (name, value.to_string())
        })
        .collect();
    let rendered = template::render(text, &vars)?;
    Ok(serde_yaml::from_str(&rendered)?)
}

pub(crate) fn seq(v: &Yaml) -> Vec<&Yaml> {
    v.as_sequence()
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

pub(crate) fn str_of(v: &Yaml) -> &str {
    v.as_str().unwrap_or_default()
}

fn removed(mutations: &Yaml) -> Vec<String> {
    seq(mutations)
        .into_iter()
        .filter_map(|m| m["remove"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

fn wasm_json(filter: &Yaml) -> Value {
    let text = filter["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("not a wasm filter: {filter:?}"));
    serde_json::from_str(text).expect("wasm plugin configuration is JSON")
}
