//! HTTP filter chain entries for test templates, as JSON (valid flow-style YAML).

use anyhow::Result;
use serde_json::{json, Value};

/// A proxy-wasm filter loading `dist/<module>.wasm` into V8 with a JSON plugin configuration.
pub fn wasm(module: &str, config: &Value) -> Result<Value> {
    let path = crate::tools::wasm(module)?;
    Ok(wasm_at(
        module,
        &path.display().to_string(),
        &config.to_string(),
    ))
}

/// The same with an explicit module path and raw configuration text (for bad-config tests).
pub fn wasm_at(name: &str, path: &str, config_text: &str) -> Value {
    json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config_text,
                },
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": path } },
                },
            },
        },
    })
}

/// Envoy's native `header_mutation` filter (the benchmark's native baseline).
pub fn header_mutation(request: Value, response: Value) -> Value {
    json!({
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": request,
                "response_mutations": response,
            },
        },
    })
}

pub fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    })
}

/// `filters` followed by the router, rendered for `{{ HTTP_FILTERS }}`.
pub fn with_router(filters: Vec<Value>) -> String {
    let mut all = filters;
    all.push(router());
    Value::Array(all).to_string()
}
