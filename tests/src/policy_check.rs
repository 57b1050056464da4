//! `make check-config`: reads an Envoy configuration (a template's `{{ ... }}` placeholders
//! allowed) and checks that the routes and the edgegate filters agree on policies:
//!
//! - every route that forwards upstream makes an explicit authentication decision (its
//!   `edgegate.jwt` metadata, or its name in jwt_auth's `routes`), and names a tenant policy
//!   where a resolving tenant stage binds policies to routes;
//! - every policy a route names is defined by every filter that reads it (an upstream filter
//!   reads the routes that lead to its cluster), and every defined policy is used;
//! - metadata values are strings, under keys some filter reads;
//! - no route turns jwt_auth off (`public` says that explicitly), and jwt_auth does not choose
//!   by its deprecated matchers.
//!
//! Each finding names the route (its name, virtual host and line) and the reason.

use crate::gateway_config::{parse_template, seq, str_of};
use anyhow::{Context, Result};
use serde_json::Value;
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One thing wrong, at a route (or at a filter when `route` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: Option<usize>,
    pub route: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "{l}: ")?;
        }
        if !self.route.is_empty() {
            write!(f, "{}: ", self.route)?;
        }
        f.write_str(&self.message)
    }
}

/// Which edgegate filter a wasm filter is, by the metadata key it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Jwt,
    Tenant,
    Transform,
    Ratelimit,
    /// Opt-in: a route without an endpoint passes untouched.
    Aggregate,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Jwt,
        Kind::Tenant,
        Kind::Transform,
        Kind::Ratelimit,
        Kind::Aggregate,
    ];

    fn key(self) -> &'static str {
        match self {
            Kind::Jwt => "jwt",
            Kind::Tenant => "tenant",
            Kind::Transform => "transform",
            Kind::Ratelimit => "ratelimit",
            Kind::Aggregate => "aggregate",
        }
    }

    /// The configuration field that defines the named policies.
    fn defined_in(self) -> &'static str {
        match self {
            Kind::Jwt => "requirements",
            Kind::Tenant => "policies",
            Kind::Transform => "transform_rules",
            Kind::Ratelimit => "limits",
            Kind::Aggregate => "endpoints",
        }
    }

    fn reserved(self) -> &'static str {
        match self {
            Kind::Jwt => "public",
            Kind::Tenant | Kind::Transform | Kind::Ratelimit | Kind::Aggregate => "none",
        }
    }

    /// The bundle's section for this filter.
    fn section(self) -> &'static str {
        match self {
            Kind::Jwt => "jwt_auth",
            Kind::Tenant => "tenant_cache_key",
            Kind::Transform => "transform",
            Kind::Ratelimit => "ratelimit",
            Kind::Aggregate => "aggregate",
        }
    }
}

/// One edgegate filter instance that binds policies to routes.
#[derive(Debug)]
struct Binder {
    kind: Kind,
    /// The filter's name in the chain (for findings).
    filter: String,
    /// `None`: a listener filter (every route); else the cluster it runs on.
    cluster: Option<String>,
    defined: BTreeSet<String>,
    by_route_name: BTreeMap<String, String>,
    /// A tenant stage that resolves (and so refuses routes without a policy).
    resolves: bool,
}

/// A route with what the check needs.
struct RouteEntry {
    label: String,
    line: Option<usize>,
    name: Option<String>,
    forwards: bool,
    clusters: Vec<String>,
    metadata: BTreeMap<String, Yaml>,
    disabled: Vec<String>,
}

/// Checks the configuration `text` (a file's contents; `{{ ... }}` placeholders allowed).
pub fn check(text: &str) -> Result<Vec<Finding>> {
    let root = parse_template(text).context("the configuration is not YAML")?;
    let mut findings = Vec::new();
    let binders = binders(&root, &mut findings)?;
    let routes = routes(&root, &route_lines(text));
    for route in &routes {
        check_route(route, &binders, &mut findings);
    }
    unused(&binders, &routes, &mut findings);
    Ok(findings)
}

fn check_route(route: &RouteEntry, binders: &[Binder], out: &mut Vec<Finding>) {
    let mut finding = |message: String| {
        out.push(Finding {
            line: route.line,
            route: route.label.clone(),
            message,
        })
    };
    for (key, value) in &route.metadata {
        if !Kind::ALL.iter().any(|k| k.key() == key) {
            finding(format!("edgegate.{key}: no edgegate filter reads this key"));
        } else if !value.is_string() {
            finding(format!("edgegate.{key}: must be a policy name (a string)"));
        }
    }
    for filter in &route.disabled {
        finding(format!(
            "turns {filter} off: name `jwt: public` instead, so the filter still strips owned headers"
        ));
    }
    for b in binders.iter().filter(|b| b.sees(route)) {
        let key = b.kind.key();
        // A filter with a route-name map binds by name only and never reads the metadata.
        let by_name = !b.by_route_name.is_empty();
        if by_name && route.metadata.contains_key(key) {
            finding(format!(
                "edgegate.{key} is ignored: {} binds routes by name (its `routes`)",
                b.filter
            ));
        }
        let chosen = b.chosen(route);
        match chosen {
            Some(p) if p == b.kind.reserved() || b.defined.contains(&p) => {}
            Some(p) => finding(format!(
                "edgegate.{key} names {p:?}, which {} does not define in {}",
                b.filter,
                b.kind.defined_in()
            )),
            None if !route.forwards || (!by_name && route.metadata.contains_key(key)) => {}
            None if b.kind == Kind::Jwt => finding(format!(
                "forwards upstream without an authentication decision: give it edgegate.jwt \
                 (a requirement of {} or `public`)",
                b.filter
            )),
            None if b.kind == Kind::Tenant && b.resolves => finding(format!(
                "forwards upstream without a tenant policy: give it edgegate.tenant (a policy \
                 of {} or `none`)",
                b.filter
            )),
            None => {}
        }
    }
}

/// Policies defined but never named, and route names mapped that no route has.
fn unused(binders: &[Binder], routes: &[RouteEntry], out: &mut Vec<Finding>) {
    for b in binders {
        let seen: Vec<&RouteEntry> = routes.iter().filter(|r| b.sees(r)).collect();
        let mut used = BTreeSet::new();
        used.extend(seen.iter().filter_map(|r| b.chosen(r)));
        for name in b.defined.difference(&used) {
            out.push(Finding {
                line: None,
                route: String::new(),
                message: format!(
                    "{}: {}.{name} is defined but no route names it",
                    b.filter,
                    b.kind.defined_in()
                ),
            });
        }
        for name in b.by_route_name.keys() {
            if !seen.iter().any(|r| r.name.as_deref() == Some(name)) {
                out.push(Finding {
                    line: None,
                    route: String::new(),
                    message: format!("{}: routes.{name}: no route has this name", b.filter),
                });
            }
        }
    }
}

impl Binder {
    /// The policy `route` names for this filter: by its name when the filter maps names,
    /// else by its metadata.
    fn chosen(&self, route: &RouteEntry) -> Option<String> {
        if self.by_route_name.is_empty() {
            let value = route.metadata.get(self.kind.key())?;
            value.as_str().map(str::to_string)
        } else {
            route
                .name
                .as_ref()
                .and_then(|n| self.by_route_name.get(n))
                .cloned()
        }
    }

    fn sees(&self, route: &RouteEntry) -> bool {
        match &self.cluster {
            None => true,
            Some(c) => route.clusters.contains(c),
        }
    }
}

/// The edgegate filters of every listener and every cluster's upstream filters.
fn binders(root: &Yaml, findings: &mut Vec<Finding>) -> Result<Vec<Binder>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for hcm in connection_managers(root) {
        for f in seq(&hcm["http_filters"]) {
            let name = str_of(&f["name"]).to_string();
            if seen.insert(name.clone()) {
                binders_of(f, None, &mut out, findings)?;
            }
        }
    }
    for cluster in seq(&root["static_resources"]["clusters"]) {
        let filters = &cluster["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"];
        for f in seq(filters) {
            binders_of(
                f,
                Some(str_of(&cluster["name"]).to_string()),
                &mut out,
                findings,
            )?;
        }
    }
    Ok(out)
}

/// The binders of one HTTP filter: none for filters that are not edgegate wasm filters; one
/// per section of a bundle.
fn binders_of(
    filter: &Yaml,
    cluster: Option<String>,
    out: &mut Vec<Binder>,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let config = &filter["typed_config"]["config"];
    let Some(text) = config["configuration"]["value"].as_str() else {
        return Ok(());
    };
    let name = str_of(&filter["name"]).to_string();
    let json: Value = serde_json::from_str(text)
        .with_context(|| format!("filter {name}: its configuration is not JSON"))?;
    let ident = format!(
        "{} {} {}",
        str_of(&config["root_id"]),
        str_of(&config["vm_config"]["code"]["local"]["filename"]),
        name
    );
    let sections: Vec<(Kind, &Value)> = if Kind::ALL.iter().any(|k| json.get(k.section()).is_some())
    {
        Kind::ALL
            .iter()
            .filter_map(|k| Some((*k, json.get(k.section())?)))
            .collect()
    } else if ident.contains("jwt") {
        vec![(Kind::Jwt, &json)]
    } else if ident.contains("tenant") {
        vec![(Kind::Tenant, &json)]
    } else if ident.contains("transform") {
        vec![(Kind::Transform, &json)]
    } else if ident.contains("ratelimit") {
        vec![(Kind::Ratelimit, &json)]
    } else if ident.contains("aggregate") {
        vec![(Kind::Aggregate, &json)]
    } else {
        Vec::new()
    };
    for (kind, c) in sections {
        let Some(defined) = c.get(kind.defined_in()).and_then(Value::as_object) else {
            if kind == Kind::Jwt && c.get("rules").is_some() {
                findings.push(Finding {
                    line: None,
                    route: String::new(),
                    message: format!(
                        "{name}: chooses requirements by its own matchers (`rules`, deprecated): \
                         give `requirements` and name them on the routes"
                    ),
                });
            }
            continue;
        };
        let stage = c.get("stage").and_then(Value::as_str).unwrap_or("both");
        out.push(Binder {
            kind,
            filter: name.clone(),
            cluster: cluster.clone(),
            defined: defined.keys().cloned().collect(),
            by_route_name: (c
                .get("routes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten())
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
            resolves: kind == Kind::Tenant && stage != "response",
        });
    }
    Ok(())
}

/// Every HTTP connection manager of every listener (filter chains and their filters).
fn connection_managers(root: &Yaml) -> Vec<&Yaml> {
    let mut out = Vec::new();
    for listener in seq(&root["static_resources"]["listeners"]) {
        for chain in seq(&listener["filter_chains"]) {
            for f in seq(&chain["filters"]) {
                if str_of(&f["name"]) == "envoy.filters.network.http_connection_manager" {
                    out.push(&f["typed_config"]);
                }
            }
        }
    }
    out
}

/// Every route of every connection manager's route table, with its line (by order).
fn routes(root: &Yaml, lines: &[usize]) -> Vec<RouteEntry> {
    let mut out = Vec::new();
    let mut tables = BTreeSet::new();
    let mut n = 0;
    for hcm in connection_managers(root) {
        let table = &hcm["route_config"];
        // The TLS listener shares the plain one's manager by anchor: one table, checked once.
        if !tables.insert(serde_yaml::to_string(table).unwrap_or_default()) {
            continue;
        }
        for vhost in seq(&table["virtual_hosts"]) {
            for route in seq(&vhost["routes"]) {
                out.push(entry(route, str_of(&vhost["name"]), lines.get(n).copied()));
                n += 1;
            }
        }
    }
    if n != lines.len() {
        // The text scan and the parse disagree (routes from an unusual layout): no lines.
        for r in &mut out {
            r.line = None;
        }
    }
    out
}

fn entry(route: &Yaml, vhost: &str, line: Option<usize>) -> RouteEntry {
    let name = route["name"].as_str().map(str::to_string);
    let action = &route["route"];
    let mut clusters: Vec<String> = action["cluster"]
        .as_str()
        .map(str::to_string)
        .into_iter()
        .collect();
    clusters.extend(
        seq(&action["weighted_clusters"]["clusters"])
            .iter()
            .map(|c| str_of(&c["name"]).to_string()),
    );
    let metadata = route["metadata"]["filter_metadata"]["edgegate"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let disabled = route["typed_per_filter_config"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .filter(|(k, v)| {
                    let k = k.as_str().unwrap_or_default();
                    k.contains("jwt") && v["disabled"].as_bool() == Some(true)
                })
                .map(|(k, _)| k.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let label = format!(
        "route {} ({vhost}, {})",
        name.as_deref()
            .map_or_else(|| "(unnamed)".to_string(), |n| format!("{n:?}")),
        serde_json::to_string(&route["match"]).unwrap_or_default()
    );
    RouteEntry {
        label,
        line,
        name,
        forwards: !action.is_null(),
        clusters,
        metadata,
        disabled,
    }
}

/// The 1-based line of every item of every `routes:` list, in order: what the parsed route
/// tables hold, in the same order, for the layouts Envoy configs use.
pub fn route_lines(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let skip = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        i += 1;
        if l.trim() != "routes:" {
            continue;
        }
        let key_indent = indent(l);
        let mut item_indent = None;
        while i < lines.len() {
            let m = lines[i];
            if skip(m) {
                i += 1;
                continue;
            }
            let at = indent(m);
            let item = m.trim_start().starts_with("- ") || m.trim() == "-";
            match item_indent {
                None if item && at >= key_indent => item_indent = Some(at),
                None => break,
                Some(j) if at < j || (at == j && !item) => break,
                Some(_) => {}
            }
            if item && Some(at) == item_indent {
                out.push(i + 1);
            }
            i += 1;
        }
    }
    out
}
