//! proxy-wasm glue shared by the filters (compiled only for `wasm32`).
//!
//! Headers are always read through the `_bytes` host calls: proxy-wasm's `String` getters panic
//! on a header value that is not UTF-8, and any client can send one (obs-text is legal HTTP).
//! A panic aborts the VM and with it every request on that worker.

use crate::headers::{HeaderChange, HeaderMap};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Bytes, MapType, MetricType};

/// Converts host header pairs to a [`HeaderMap`], replacing invalid UTF-8 instead of panicking.
pub fn header_map(pairs: Vec<(String, Bytes)>) -> HeaderMap {
    HeaderMap::new(
        pairs
            .into_iter()
            .map(|(name, value)| {
                let value = match String::from_utf8(value) {
                    Ok(v) => v,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                (name, value)
            })
            .collect(),
    )
}

/// Reads one header map (request or response headers) from the host.
pub fn read_headers(map: MapType) -> HeaderMap {
    header_map(hostcalls::get_map_bytes(map).unwrap_or_default())
}

/// Carries out [`crate::headers::changes`] on a host header map.
pub fn apply_changes(map: MapType, changes: &[HeaderChange]) {
    for change in changes {
        let _ = match change {
            HeaderChange::Remove(name) => hostcalls::remove_map_value(map, name),
            HeaderChange::Set(name, value) => hostcalls::set_map_value(map, name, Some(value)),
            HeaderChange::Add(name, value) => hostcalls::add_map_value(map, name, value),
        };
    }
}

/// A counter defined once in the root context and shared with its HTTP contexts.
#[derive(Debug, Clone, Copy)]
pub struct Counter(Option<u32>);

impl Counter {
    /// Defines `name`; Envoy exposes it as `wasmcustom.<name>`. A host that refuses the
    /// definition leaves a counter that counts nothing rather than failing the filter.
    pub fn define(name: &str) -> Self {
        Counter(hostcalls::define_metric(MetricType::Counter, name).ok())
    }

    pub fn inc(self) {
        self.add(1);
    }

    /// Adds `n`; adding 0 makes no host call.
    pub fn add(self, n: i64) {
        if n == 0 {
            return;
        }
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}

/// A counter for the per-request hot path: increments accumulate in the VM and reach the host
/// in one call per [`flush`](Self::flush) (the root context's tick), instead of one host call
/// per request. Totals are exact; the host sees them up to one tick late.
#[derive(Debug)]
pub struct BatchedCounter {
    counter: Counter,
    pending: std::cell::Cell<i64>,
}

impl BatchedCounter {
    pub fn define(name: &str) -> Self {
        Self {
            counter: Counter::define(name),
            pending: std::cell::Cell::new(0),
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: i64) {
        self.pending.set(self.pending.get().saturating_add(n));
    }

    pub fn flush(&self) {
        self.counter.add(self.pending.replace(0));
    }
}

/// A gauge (e.g. the age of a synced list), same conventions as [`Counter`].
#[derive(Debug, Clone, Copy)]
pub struct Gauge(Option<u32>);

impl Gauge {
    pub fn define(name: &str) -> Self {
        Gauge(hostcalls::define_metric(MetricType::Gauge, name).ok())
    }

    pub fn set(self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// Adds `delta` (negative: subtracts). Every VM that defines the same name adds to one
    /// gauge, so a gauge only ever moved by `add` holds the sum over all workers (e.g. streams
    /// in flight). Adding 0 makes no host call.
    pub fn add(self, delta: i64) {
        if delta == 0 {
            return;
        }
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }
}

/// Sends a local reply with a JSON body `{"error", "message", "request_id"}`.
pub fn send_json_error(
    status: u32,
    error: &str,
    message: &str,
    request_id: Option<&str>,
    extra_headers: &[(&str, &str)],
) {
    let body = serde_json::json!({
        "error": error,
        "message": message,
        "request_id": request_id.unwrap_or(""),
    })
    .to_string();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra_headers.len() + 1);
    headers.push(("content-type", "application/json"));
    headers.extend_from_slice(extra_headers);
    let _ = hostcalls::send_http_response(status, headers, Some(body.as_bytes()));
}

/// Sends a local reply with a JSON body `{"error", "message", "request_id"}` and `fields` next to
/// them (e.g. which limit refused the request, and its size).
pub fn send_json_error_with(
    status: u32,
    error: &str,
    message: &str,
    fields: &[(&str, serde_json::Value)],
    request_id: Option<&str>,
    extra_headers: &[(&str, &str)],
) {
    let mut body = serde_json::Map::new();
    for (name, value) in fields {
        body.insert((*name).to_string(), value.clone());
    }
    body.insert("error".into(), error.into());
    body.insert("message".into(), message.into());
    body.insert("request_id".into(), request_id.unwrap_or("").into());
    let body = serde_json::Value::Object(body).to_string();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra_headers.len() + 1);
    headers.push(("content-type", "application/json"));
    headers.extend_from_slice(extra_headers);
    let _ = hostcalls::send_http_response(status, headers, Some(body.as_bytes()));
}

/// Logs a refused plugin configuration at error level, with the plugin's name.
pub fn log_config_error(plugin: &str, err: &crate::ConfigError) {
    let _ = hostcalls::log(
        proxy_wasm::types::LogLevel::Error,
        &format!("{plugin}: refusing to start: {err}"),
    );
}

/// Proxy-wasm shared data behind [`crate::shared::SharedStore`]: one store per `vm_id`, seen
/// by every worker's VM.
#[derive(Debug, Clone, Copy)]
pub struct SharedData;

impl crate::shared::SharedStore for SharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}
