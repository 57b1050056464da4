//! The manifests as documents, the reference gateway, and the look-ups several modules use.

use crate::prelude::*;

/// One YAML document of one manifest file.
pub struct Doc {
    pub file: String,
    pub value: Value,
}

impl Doc {
    pub fn str_at(&self, pointer: &str) -> &str {
        self.value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: {} has no string at {pointer}", self.file, self.id()))
    }

    pub fn at(&self, pointer: &str) -> &Value {
        self.value
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{}: {} has nothing at {pointer}", self.file, self.id()))
    }

    pub fn list(&self, pointer: &str) -> &[Value] {
        self.at(pointer)
            .as_array()
            .unwrap_or_else(|| panic!("{}: {} has no list at {pointer}", self.file, self.id()))
    }

    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or("")
    }

    pub fn id(&self) -> String {
        format!("{} {}/{}", self.kind(), self.namespace(), self.name())
    }
}

pub fn istio_dir() -> PathBuf {
    tools::repo_root().join("envoy/istio")
}

/// Every manifest file (kustomization.yaml is not a Kubernetes object), sorted.
pub fn manifest_files() -> Vec<String> {
    manifest_files_in(&istio_dir())
}

fn manifest_files_in(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .filter(|n| n != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

pub fn yaml_documents(file: &str, text: &str) -> Vec<Value> {
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

pub fn load() -> Vec<Doc> {
    load_from(&istio_dir())
}

/// The manifests of a copy of `envoy/istio/` (e.g. one `make oci` pinned).
pub fn load_from(dir: &std::path::Path) -> Vec<Doc> {
    let mut docs = Vec::new();
    for file in manifest_files_in(dir) {
        let text = std::fs::read_to_string(dir.join(&file)).unwrap();
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

pub fn of_kind<'a>(docs: &'a [Doc], kind: &str) -> Vec<&'a Doc> {
    docs.iter().filter(|d| d.kind() == kind).collect()
}

/// `outbound|<port>|<subset>|<host>` -> (port, subset, host).
pub fn outbound_cluster(name: &str) -> (u16, String, String) {
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
pub fn reference_gateway() -> Value {
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
pub fn reference_filter(gateway: &Value, name: &str) -> Value {
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

/// One Envoy route Istio builds from a VirtualService `http` entry: one per `match` (one for an
/// entry without matches), named `<http.name>`, or `<http.name>.<match.name>` when the match
/// is named (Istio's `TranslateRoute`).
#[derive(Debug, Clone)]
pub struct IstioRoute {
    pub name: String,
    pub http: Value,
    /// The match (`Null` for an entry without matches).
    pub matches: Value,
}

/// Every route of every VirtualService, in order.
pub fn istio_routes(docs: &[Doc]) -> Vec<IstioRoute> {
    let mut out = Vec::new();
    for vs in of_kind(docs, "VirtualService") {
        for http in vs.list("/spec/http") {
            let base = http["name"].as_str().unwrap_or_default().to_string();
            let matches: Vec<Value> = http["match"].as_array().cloned().unwrap_or_default();
            let matches = if matches.is_empty() {
                vec![Value::Null]
            } else {
                matches
            };
            for m in matches {
                let name = match m["name"].as_str() {
                    Some(n) => format!("{base}.{n}"),
                    None => base.clone(),
                };
                out.push(IstioRoute {
                    name,
                    http: http.clone(),
                    matches: m,
                });
            }
        }
    }
    out
}
