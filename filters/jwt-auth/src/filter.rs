//! The jwt_auth plugin (wasm32, feature `plugin`): the root context owns the VM's
//! [`WorkerAuth`] and its ticks; HTTP contexts hand it request headers and pause while keys are
//! being fetched. Everything that talks to the host lives in [`crate::host`].

use crate::host::{apply_edits, resume_allowed, Verdict, WorkerAuth, PLUGIN, TICK};
use filter_core::wasm::{log_config_error, read_headers};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(JwtRoot { worker: None }));
}}

struct JwtRoot {
    worker: Option<Rc<RefCell<WorkerAuth>>>,
}

impl Context for JwtRoot {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(w) = &self.worker {
            w.borrow_mut().on_grpc_call_response(token, status, size);
        }
    }

    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(w) = &self.worker {
            w.borrow_mut()
                .on_http_call_response(token, body_size, &mut resume_allowed);
        }
    }
}

impl RootContext for JwtRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match WorkerAuth::configure(&bytes) {
            Ok(w) => {
                self.worker = Some(Rc::new(RefCell::new(w)));
                let _ = hostcalls::set_tick_period(TICK);
                true
            }
            Err(e) => {
                log_config_error(PLUGIN, &e);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(w) = &self.worker {
            w.borrow_mut().on_tick(&mut resume_allowed);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = Rc::clone(self.worker.as_ref()?);
        Some(Box::new(JwtRequest { worker, context_id }))
    }
}

struct JwtRequest {
    worker: Rc<RefCell<WorkerAuth>>,
    context_id: u32,
}

impl Context for JwtRequest {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        self.worker
            .borrow_mut()
            .on_http_call_response(token, body_size, &mut resume_allowed);
    }

    fn on_done(&mut self) -> bool {
        self.worker.borrow_mut().on_done(self.context_id);
        true
    }
}

impl HttpContext for JwtRequest {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = read_headers(MapType::HttpRequestHeaders);
        let verdict = self
            .worker
            .borrow_mut()
            .on_request_headers(self.context_id, &headers);
        match verdict {
            Verdict::Allow(edits) => {
                apply_edits(&edits, &headers);
                Action::Continue
            }
            Verdict::Denied | Verdict::Paused => Action::Pause,
        }
    }
}
