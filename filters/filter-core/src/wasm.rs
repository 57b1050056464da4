//! The proxy-wasm side (compiled only for `wasm32`): [`WasmHost`], the [`Host`] over
//! proxy-wasm's host calls, and [`PluginRoot`] / [`HttpAdapter`], which run any [`Plugin`] as a
//! proxy-wasm root context and its requests as HTTP contexts. A filter's entry point is one line:
//! `proxy_wasm::main! {{ filter_core::wasm::start::<MyPlugin<WasmHost>>(); }}`.
//!
//! Headers are always read through the `_bytes` host calls: proxy-wasm's `String` getters panic
//! on a header value that is not UTF-8, and any client can send one (obs-text is legal HTTP).
//! A panic aborts the VM and with it every request on that worker.

use crate::headers::HeaderMap;
use crate::host::{self, Buffer, CallError, GrpcCall, Host, Level, Map, MetricKind};
use crate::plugin::{HttpFilter, Plugin, TICK};
use crate::shared::SharedStore;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// Envoy, through proxy-wasm's host calls. Zero-sized: copies cost nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

fn map_type(map: Map) -> MapType {
    match map {
        Map::RequestHeaders => MapType::HttpRequestHeaders,
        Map::RequestTrailers => MapType::HttpRequestTrailers,
        Map::ResponseHeaders => MapType::HttpResponseHeaders,
        Map::ResponseTrailers => MapType::HttpResponseTrailers,
        Map::CallResponseHeaders => MapType::HttpCallResponseHeaders,
    }
}

fn buffer_type(buffer: Buffer) -> BufferType {
    match buffer {
        Buffer::RequestBody => BufferType::HttpRequestBody,
        Buffer::ResponseBody => BufferType::HttpResponseBody,
        Buffer::CallResponseBody => BufferType::HttpCallResponseBody,
        Buffer::GrpcReceive => BufferType::GrpcReceiveBuffer,
    }
}

fn log_level(level: Level) -> LogLevel {
    match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

/// Converts host header pairs to a [`HeaderMap`], replacing invalid UTF-8 instead of panicking.
fn header_map(pairs: Vec<(String, Vec<u8>)>) -> HeaderMap {
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

impl SharedStore for WasmHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

impl Host for WasmHost {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn log(&self, level: Level, message: &str) {
        let _ = hostcalls::log(log_level(level), message);
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> bool {
        hostcalls::set_property(path.to_vec(), Some(value)).is_ok()
    }

    fn headers(&self, map: Map) -> HeaderMap {
        header_map(hostcalls::get_map_bytes(map_type(map)).unwrap_or_default())
    }

    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(map_type(map), name)
            .ok()
            .flatten()
    }

    fn set_header(&self, map: Map, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(map_type(map), name, value);
    }

    fn add_header(&self, map: Map, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(map_type(map), name, value);
    }

    fn remove_header(&self, map: Map, name: &str) {
        let _ = hostcalls::remove_map_value(map_type(map), name);
    }

    fn buffer(&self, buffer: Buffer, start: usize, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(buffer_type(buffer), start, size)
            .ok()
            .flatten()
    }

    fn set_buffer(&self, buffer: Buffer, start: usize, size: usize, data: &[u8]) -> bool {
        hostcalls::set_buffer(buffer_type(buffer), start, size, data).is_ok()
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: Option<&[u8]>) {
        let _ = hostcalls::send_http_response(status, headers.to_vec(), body);
    }

    fn resume_request(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn reset_response(&self) {
        let _ = hostcalls::reset_http_response();
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        hostcalls::set_effective_context(context_id).is_ok()
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, CallError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
            .map_err(|e| CallError(format!("{e:?}")))
    }

    fn grpc_call(&self, call: GrpcCall<'_>) -> Result<u32, CallError> {
        hostcalls::dispatch_grpc_call(
            call.cluster,
            call.service,
            call.method,
            vec![],
            Some(call.message),
            call.timeout,
        )
        .map_err(|e| CallError(format!("{e:?}")))
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        let _ = hostcalls::increment_metric(id, delta);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn set_tick_period(&self, period: Duration) {
        let _ = hostcalls::set_tick_period(period);
    }
}

/// Registers `P` as the module's root context. Call from `proxy_wasm::main!`.
pub fn start<P: Plugin<Host = WasmHost>>() {
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| {
        Box::new(PluginRoot::<P> {
            plugin: None,
            host: WasmHost,
        })
    });
}

/// Runs a [`Plugin`] as a proxy-wasm root context.
pub struct PluginRoot<P> {
    plugin: Option<Rc<P>>,
    host: WasmHost,
}

impl<P: Plugin<Host = WasmHost>> Context for PluginRoot<P> {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(p) = &self.plugin {
            p.on_http_call_response(token, body_size);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(p) = &self.plugin {
            p.on_grpc_call_response(token, status, size);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(p) = &self.plugin {
            p.flush();
        }
        true
    }
}

impl<P: Plugin<Host = WasmHost>> RootContext for PluginRoot<P> {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match P::configure(self.host, &bytes) {
            Ok(p) => {
                if let Some(old) = self.plugin.replace(Rc::new(p)) {
                    old.flush();
                }
                let _ = hostcalls::set_tick_period(TICK);
                true
            }
            Err(e) => {
                let message = format!("refusing to start: {e}");
                host::log(&self.host, P::NAME, Level::Error, &message);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(p) = &self.plugin {
            p.tick();
            p.flush();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // A context must be returned (proxy-wasm aborts otherwise): without a configuration the
        // request goes on untouched.
        let filter = self.plugin.as_ref().map(|p| P::http_context(p, context_id));
        Some(Box::new(HttpAdapter(filter)))
    }
}

/// Runs an [`HttpFilter`] as a proxy-wasm HTTP context.
pub struct HttpAdapter<F>(pub F);

fn action(a: host::Action) -> Action {
    match a {
        host::Action::Continue => Action::Continue,
        host::Action::Pause => Action::Pause,
    }
}

impl<F: HttpFilter> Context for HttpAdapter<F> {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        self.0.on_http_call_response(token, body_size);
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        self.0.on_grpc_call_response(token, status, size);
    }

    fn on_done(&mut self) -> bool {
        self.0.on_done();
        true
    }
}

impl<F: HttpFilter> HttpContext for HttpAdapter<F> {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        action(self.0.on_request_trailers())
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_headers(end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_body(body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _: usize) -> Action {
        action(self.0.on_response_trailers())
    }

    fn on_log(&mut self) {
        self.0.on_log();
    }
}
