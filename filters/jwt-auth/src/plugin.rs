//! The jwt_auth plugin, host-free: [`JwtPlugin`] is a VM's root state (its [`WorkerAuth`]:
//! engine, keys, revocation list, paused requests, counters) and [`JwtRequest`] one request,
//! which hands its headers to the worker once and pauses while keys are fetched. Envoy runs it
//! through `filter_core::wasm::start` (see `filter.rs`); the glue tests drive it over
//! `filter_core::testing::FakeHost` exactly as Envoy does.

use crate::host::{apply_edits, resume_allowed, Verdict, WorkerAuth, PLUGIN};
use filter_core::host::{Action, Map};
use filter_core::plugin::{HttpFilter, Plugin};
use filter_core::route::RouteFacts;
use filter_core::{ConfigError, Host};
use std::cell::RefCell;
use std::rc::Rc;

/// One VM's jwt_auth state, shared by its requests.
pub struct JwtPlugin<H: Host> {
    host: H,
    worker: RefCell<WorkerAuth<H>>,
}

impl<H: Host> JwtPlugin<H> {
    /// The VM's worker (bundles and tests that need more than the plugin callbacks).
    pub fn worker(&self) -> &RefCell<WorkerAuth<H>> {
        &self.worker
    }
}

impl<H: Host> Plugin for JwtPlugin<H> {
    type Host = H;
    type Http = JwtRequest<H>;
    const NAME: &'static str = PLUGIN;

    fn configure(host: H, config: &[u8]) -> Result<Self, ConfigError> {
        let worker = WorkerAuth::configure(host.clone(), config)?;
        Ok(JwtPlugin {
            host,
            worker: RefCell::new(worker),
        })
    }

    /// Shared JWKS state, due refreshes, revocation sync, paused requests whose time is up
    /// (each resumed with its edits written, or refused).
    fn tick(&self) {
        self.worker
            .borrow_mut()
            .on_tick(&mut resume_allowed(&self.host));
    }

    fn flush(&self) {
        self.worker.borrow().flush();
    }

    /// A JWKS fetch dispatched from the root context (a background refresh) answered.
    fn on_http_call_response(&self, token: u32, body_size: usize) {
        self.worker.borrow_mut().on_http_call_response(
            token,
            body_size,
            &mut resume_allowed(&self.host),
        );
    }

    /// A `ListRevocations` call answered.
    fn on_grpc_call_response(&self, token: u32, status: u32, size: usize) {
        self.worker
            .borrow_mut()
            .on_grpc_call_response(token, status, size);
    }

    fn http_context(self: &Rc<Self>, context_id: u32) -> JwtRequest<H> {
        JwtRequest {
            plugin: Rc::clone(self),
            context_id,
        }
    }
}

/// One request through jwt_auth.
pub struct JwtRequest<H: Host> {
    plugin: Rc<JwtPlugin<H>>,
    context_id: u32,
}

impl<H: Host> HttpFilter for JwtRequest<H> {
    /// Reads the headers once and decides: allowed requests go on with their edits written,
    /// refused ones were answered, waiting ones pause until the worker resumes or refuses them.
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let host = &self.plugin.host;
        let headers = host.headers(Map::RequestHeaders);
        let mut worker = self.plugin.worker.borrow_mut();
        let route = RouteFacts::read(host, worker.route_needs());
        let verdict = worker.on_request_headers(self.context_id, &headers, &route);
        drop(worker);
        match verdict {
            Verdict::Allow(edits) => {
                apply_edits(host, &edits, &headers);
                Action::Continue
            }
            Verdict::Denied | Verdict::Paused => Action::Pause,
        }
    }

    /// A JWKS fetch this request dispatched answered: paused requests are decided again.
    fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        self.plugin.worker.borrow_mut().on_http_call_response(
            token,
            body_size,
            &mut resume_allowed(&self.plugin.host),
        );
    }

    fn on_done(&mut self) {
        self.plugin.worker.borrow_mut().on_done(self.context_id);
    }
}
