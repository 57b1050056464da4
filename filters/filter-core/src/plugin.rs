//! One plugin skeleton for every filter: a [`Plugin`] is what a VM's root context holds (the
//! compiled configuration, counters, cross-request state), an [`HttpFilter`] is one request.
//! `crate::wasm::PluginRoot` runs any `Plugin` in Envoy: it parses the configuration (refusing
//! to start on an error, logged with the field), ticks every [`TICK`], flushes batched counters
//! on every tick and when the VM stops, and routes call answers to the plugin. Both traits are
//! host-free: tests drive a plugin natively over [`crate::testing::FakeHost`] exactly as Envoy
//! drives it.

use crate::config::ConfigError;
use crate::host::{Action, Host};
use std::rc::Rc;
use std::time::Duration;

/// The root tick of every plugin: key and revocation refreshes, stream-slot upkeep, paused
/// requests whose time is up, then batched counters. Work per tick is bounded by the plugin.
pub const TICK: Duration = Duration::from_millis(250);

/// A VM's plugin state, shared by its requests (through `Rc`, so state that changes after
/// configuration sits in cells).
pub trait Plugin: Sized + 'static {
    type Host: Host;
    type Http: HttpFilter + 'static;
    /// The name the plugin logs under.
    const NAME: &'static str;

    /// Parses and validates the plugin configuration; an error refuses the configuration.
    fn configure(host: Self::Host, config: &[u8]) -> Result<Self, ConfigError>;

    /// The root tick: periodic upkeep (never unbounded work: it runs on the worker thread).
    fn tick(&self) {}

    /// Hands batched counters to the host (after every tick, and when the VM stops).
    fn flush(&self) {}

    /// An HTTP call dispatched from the root context answered (or failed: status not 200).
    fn on_http_call_response(&self, _token: u32, _body_size: usize) {}

    /// A gRPC call dispatched from the root context answered (`status` 0 is OK).
    fn on_grpc_call_response(&self, _token: u32, _status: u32, _size: usize) {}

    /// The state of a new request.
    fn http_context(self: &Rc<Self>, context_id: u32) -> Self::Http;
}

/// One request's callbacks. Every callback defaults to doing nothing and going on.
pub trait HttpFilter {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_request_trailers(&mut self) -> Action {
        Action::Continue
    }
    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_response_trailers(&mut self) -> Action {
        Action::Continue
    }
    /// An HTTP call this request's context dispatched answered.
    fn on_http_call_response(&mut self, _token: u32, _body_size: usize) {}
    /// A gRPC call this request's context dispatched answered (`status` 0 is OK). proxy-wasm
    /// hands an answer to the context that was running when the call went out, and drops it
    /// when that request is already gone: calls that must outlive their request go out from
    /// the root context (its tick).
    fn on_grpc_call_response(&mut self, _token: u32, _status: u32, _size: usize) {}
    /// The request is over (completed, refused, reset): comes once, as does `on_log`.
    fn on_done(&mut self) {}
    fn on_log(&mut self) {}
}

/// A request of a plugin that is not configured: everything goes on untouched.
impl<F: HttpFilter> HttpFilter for Option<F> {
    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        self.as_mut()
            .map_or(Action::Continue, |f| f.on_request_headers(end_of_stream))
    }
    fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.as_mut().map_or(Action::Continue, |f| {
            f.on_request_body(body_size, end_of_stream)
        })
    }
    fn on_request_trailers(&mut self) -> Action {
        self.as_mut()
            .map_or(Action::Continue, HttpFilter::on_request_trailers)
    }
    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        self.as_mut()
            .map_or(Action::Continue, |f| f.on_response_headers(end_of_stream))
    }
    fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.as_mut().map_or(Action::Continue, |f| {
            f.on_response_body(body_size, end_of_stream)
        })
    }
    fn on_response_trailers(&mut self) -> Action {
        self.as_mut()
            .map_or(Action::Continue, HttpFilter::on_response_trailers)
    }
    fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        if let Some(f) = self {
            f.on_http_call_response(token, body_size);
        }
    }
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(f) = self {
            f.on_grpc_call_response(token, status, size);
        }
    }
    fn on_done(&mut self) {
        if let Some(f) = self {
            f.on_done();
        }
    }
    fn on_log(&mut self) {
        if let Some(f) = self {
            f.on_log();
        }
    }
}
