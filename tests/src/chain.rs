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
/// transform holds response headers while it checks a body it must rewrite, which Envoy honours
/// only with `allow_on_headers_stop_iteration` (docs/transform.md); the other
/// modules must not have it.
pub fn wasm_at(name: &str, path: &str, config_text: &str) -> Value {
    json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "allow_on_headers_stop_iteration": name == "transform",
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

/// [`wasm`] without `allow_on_headers_stop_iteration`, whatever the module: how Istio's
/// WasmPlugin (which cannot set it) runs a filter. transform then needs
/// `"response_headers_mode": "stream"`, or responses on routes with response body rules stall.
pub fn wasm_without_header_hold(module: &str, config: &Value) -> Result<Value> {
    let mut filter = wasm(module, config)?;
    if let Some(c) = filter["typed_config"]["config"].as_object_mut() {
        c.remove("allow_on_headers_stop_iteration");
    }
    Ok(filter)
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

/// Envoy's file-system HTTP cache storing under `dir`, varying on the tenant (as
/// envoy/tenant-cache.yaml configures it).
pub fn file_cache(dir: &std::path::Path) -> Value {
    json!({
        "name": "envoy.filters.http.cache",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.http.cache.file_system_http_cache.v3.FileSystemHttpCacheConfig",
                "cache_path": dir.display().to_string(),
                "max_cache_size_bytes": 268435456,
                "manager_config": { "thread_pool": { "thread_count": 1 } },
            },
            "allowed_vary_headers": [
                { "exact": "x-tenant-id", "ignore_case": true },
                { "exact": "accept-encoding", "ignore_case": true },
            ],
        },
    })
}

/// `filters` followed by `upstream_codec`, rendered for a cluster's upstream `http_filters`.
pub fn with_upstream_codec(filters: Vec<Value>) -> String {
    let mut all = filters;
    all.push(json!({
        "name": "envoy.filters.http.upstream_codec",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec" },
    }));
    Value::Array(all).to_string()
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
