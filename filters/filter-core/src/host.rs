//! The host as a trait: everything a filter asks of Envoy (header maps, bodies, local replies,
//! resuming a paused request, HTTP and gRPC calls, shared data, metrics, the clock, logs).
//!
//! Filters hold a `H: Host` and never call proxy-wasm directly, so their stateful glue (paused
//! requests, key fetches, body buffering, counters, stream slots) builds and is tested natively
//! against [`crate::testing::FakeHost`], a recording fake; in Envoy it runs against
//! `crate::wasm::WasmHost`, a zero-sized wrapper over proxy-wasm's host calls.
//!
//! A `Host` is a cheap handle (`Clone`): counters and per-request state keep their own copy.

use crate::headers::{HeaderEdit, HeaderMap};
use crate::shared::SharedStore;
use std::time::Duration;

/// A header map of the current context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Map {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    /// The headers of the answer to an HTTP call (in `on_http_call_response`).
    CallResponseHeaders,
}

/// A byte buffer of the current context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buffer {
    RequestBody,
    ResponseBody,
    /// The body of the answer to an HTTP call.
    CallResponseBody,
    /// The message of the answer to a gRPC call.
    GrpcReceive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// What a filter callback tells the host: go on, or hold the headers / buffer the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// Why a call could not be dispatched (unknown cluster, bad arguments), for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError(pub String);

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One outgoing gRPC call.
#[derive(Debug, Clone, Copy)]
pub struct GrpcCall<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub message: &'a [u8],
    pub timeout: Duration,
}

/// Envoy as a filter sees it. Host failures are not errors a filter can act on: reads of
/// something absent give `None`, writes report only whether they happened.
pub trait Host: SharedStore + Clone + 'static {
    /// The host clock in Unix milliseconds.
    fn now_ms(&self) -> u64;
    fn log(&self, level: Level, message: &str);
    /// A property (`["plugin_name"]`, `["xds", "route_name"]`, ...).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Sets a property of the current request's stream (Envoy keeps `["name"]` as filter state
    /// `wasm.name`, which access logs can read); false when the host refused.
    fn set_property(&self, path: &[&str], value: &[u8]) -> bool;

    /// Every header of `map`, in order. Values that are not UTF-8 are replaced, never a panic.
    fn headers(&self, map: Map) -> HeaderMap;
    /// One header's first value, as bytes.
    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>>;
    /// Replaces every value of `name` (`None`: removes it).
    fn set_header(&self, map: Map, name: &str, value: Option<&str>);
    fn add_header(&self, map: Map, name: &str, value: &str);
    fn remove_header(&self, map: Map, name: &str);

    fn buffer(&self, buffer: Buffer, start: usize, size: usize) -> Option<Vec<u8>>;
    /// Replaces `size` bytes from `start` with `data`; false when the host refused.
    fn set_buffer(&self, buffer: Buffer, start: usize, size: usize, data: &[u8]) -> bool;

    /// Answers the current request locally.
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: Option<&[u8]>);
    /// Lets a paused request go on.
    fn resume_request(&self);
    /// Resets the current response's stream.
    fn reset_response(&self);
    /// Makes `context_id` the context later calls act on; false when it is gone.
    fn set_effective_context(&self, context_id: u32) -> bool;

    /// Dispatches an HTTP call; its answer comes back to the calling context with the token.
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, CallError>;
    /// Dispatches a unary gRPC call; its answer comes back with the token.
    fn grpc_call(&self, call: GrpcCall<'_>) -> Result<u32, CallError>;

    /// Sets how often the plugin's root ticks (from a request context too: it is that
    /// request's plugin's root). [`crate::plugin::TICK`] unless a plugin hurries a tick.
    fn set_tick_period(&self, period: Duration);

    /// Defines a metric (Envoy shows it as `wasmcustom.<name>`); `None` when refused.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment_metric(&self, id: u32, delta: i64);
    fn record_metric(&self, id: u32, value: u64);

    /// Writes `edits` to `map`, in order: the one writer of header edits.
    fn write_edits<'a>(&self, map: Map, edits: impl IntoIterator<Item = &'a HeaderEdit>) {
        for edit in edits {
            match edit {
                HeaderEdit::Remove(name) => self.remove_header(map, name),
                HeaderEdit::Set(name, value) => self.set_header(map, name, Some(value)),
                HeaderEdit::Add(name, value) => self.add_header(map, name, value),
            }
        }
    }

    /// Answers the current request with a JSON body `{"error", "message", "request_id"}`.
    fn send_json_error(
        &self,
        status: u32,
        error: &str,
        message: &str,
        request_id: Option<&str>,
        extra_headers: &[(&str, &str)],
    ) {
        self.send_json_error_with(status, error, message, &[], request_id, extra_headers);
    }

    /// [`Self::send_json_error`] with `fields` next to the three (e.g. which limit refused).
    fn send_json_error_with(
        &self,
        status: u32,
        error: &str,
        message: &str,
        fields: &[(&str, serde_json::Value)],
        request_id: Option<&str>,
        extra_headers: &[(&str, &str)],
    ) {
        let body = json_error_body(error, message, fields, request_id);
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra_headers.len() + 1);
        headers.push(("content-type", "application/json"));
        headers.extend_from_slice(extra_headers);
        self.send_response(status, &headers, Some(body.as_bytes()));
    }
}

/// The gateway's JSON error body: `fields`, then `error`, `message` and `request_id`.
pub fn json_error_body(
    error: &str,
    message: &str,
    fields: &[(&str, serde_json::Value)],
    request_id: Option<&str>,
) -> String {
    let mut body = serde_json::Map::new();
    for (name, value) in fields {
        body.insert((*name).to_string(), value.clone());
    }
    body.insert("error".into(), error.into());
    body.insert("message".into(), message.into());
    body.insert("request_id".into(), request_id.unwrap_or("").into());
    serde_json::Value::Object(body).to_string()
}

/// Logs `message` at `level` under the plugin's name.
pub fn log<H: Host>(host: &H, plugin: &str, level: Level, message: &str) {
    host.log(level, &format!("{plugin}: {message}"));
}

/// A counter, defined once per VM. A host that refuses the definition leaves a counter that
/// counts nothing rather than failing the filter.
#[derive(Debug, Clone)]
pub struct Counter<H: Host> {
    host: H,
    id: Option<u32>,
}

impl<H: Host> Counter<H> {
    pub fn define(host: &H, name: &str) -> Self {
        Counter {
            host: host.clone(),
            id: host.define_metric(MetricKind::Counter, name),
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`; adding 0 makes no host call.
    pub fn add(&self, n: i64) {
        if let (Some(id), true) = (self.id, n != 0) {
            self.host.increment_metric(id, n);
        }
    }

    /// Adds a count (saturating).
    pub fn add_count(&self, n: usize) {
        self.add(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// A counter for the per-request hot path: increments accumulate in the VM and reach the host
/// in one call per [`flush`](Self::flush) (the plugin's tick), instead of one host call per
/// request. Totals are exact; the host sees them up to one tick late.
#[derive(Debug)]
pub struct BatchedCounter<H: Host> {
    counter: Counter<H>,
    pending: std::cell::Cell<i64>,
}

impl<H: Host> BatchedCounter<H> {
    pub fn define(host: &H, name: &str) -> Self {
        Self {
            counter: Counter::define(host, name),
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

/// A gauge (e.g. the age of a synced list).
#[derive(Debug, Clone)]
pub struct Gauge<H: Host> {
    host: H,
    id: Option<u32>,
}

impl<H: Host> Gauge<H> {
    pub fn define(host: &H, name: &str) -> Self {
        Gauge {
            host: host.clone(),
            id: host.define_metric(MetricKind::Gauge, name),
        }
    }

    pub fn set(&self, value: u64) {
        if let Some(id) = self.id {
            self.host.record_metric(id, value);
        }
    }

    /// Adds `delta` (negative: subtracts). Every VM that defines the same name adds to one
    /// gauge, so a gauge only ever moved by `add` holds the sum over all workers (e.g. streams
    /// in flight). Adding 0 makes no host call.
    pub fn add(&self, delta: i64) {
        if let (Some(id), true) = (self.id, delta != 0) {
            self.host.increment_metric(id, delta);
        }
    }
}

/// A random seed from the OS, or from the host clock when there is none.
pub fn random_u64<H: Host>(host: &H) -> u64 {
    let mut b = [0u8; 8];
    match getrandom::getrandom(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => host.now_ms().rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15,
    }
}
