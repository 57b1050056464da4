//! The transform plugin (wasm32, feature `plugin`): one header-map read per direction, the
//! planned writes, body buffering, response headers held while a response body may be refused.
//! Every decision comes from [`Transformer`]; the per-request state and the host calls for
//! bodies are in [`crate::host`].

use crate::host::{
    Direction, ResponseNeeds, TransformMetrics, TransformRequest, METRICS_FLUSH, PLUGIN,
};
use crate::Transformer;
use filter_core::wasm::{apply_changes as write_edits, log_config_error, read_headers};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(TransformRoot::default()));
}}

#[derive(Default)]
struct TransformRoot {
    transformer: Option<Rc<Transformer>>,
    metrics: Option<Rc<TransformMetrics>>,
}

impl Context for TransformRoot {}

impl RootContext for TransformRoot {
    fn on_tick(&mut self) {
        if let Some(m) = &self.metrics {
            m.flush();
        }
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match Transformer::new(&config) {
            Ok(t) => {
                self.transformer = Some(Rc::new(t));
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(TransformMetrics::define()));
                    let _ = proxy_wasm::hostcalls::set_tick_period(METRICS_FLUSH);
                }
                true
            }
            Err(err) => {
                log_config_error(PLUGIN, &err);
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let active = match (&self.transformer, &self.metrics) {
            (Some(t), Some(m)) => Some((Rc::clone(t), Rc::clone(m))),
            _ => None,
        };
        Some(Box::new(TransformHttp {
            active,
            request: TransformRequest::default(),
        }))
    }
}

struct TransformHttp {
    /// None when the plugin has no valid configuration (it then does nothing).
    active: Option<(Rc<Transformer>, Rc<TransformMetrics>)>,
    request: TransformRequest,
}

impl Context for TransformHttp {}

impl TransformHttp {
    fn on_body(&mut self, direction: Direction, body_size: usize, end_of_stream: bool) -> Action {
        match &self.active {
            Some((t, metrics)) => {
                self.request
                    .on_body(t, metrics, direction, body_size, end_of_stream)
            }
            None => Action::Continue,
        }
    }

    fn on_trailers(&mut self, direction: Direction) -> Action {
        match &self.active {
            Some((t, metrics)) => self.request.on_trailers_counted(t, metrics, direction),
            None => Action::Continue,
        }
    }
}

impl HttpContext for TransformHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some((t, metrics)) = &self.active else {
            return Action::Continue;
        };
        let headers = read_headers(MapType::HttpRequestHeaders);
        let edits = self
            .request
            .on_request_headers(t, metrics, &headers, end_of_stream);
        write_edits(MapType::HttpRequestHeaders, &edits);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Request)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some((t, metrics)) = &self.active else {
            return Action::Continue;
        };
        let headers = match self.request.response_needs(t) {
            ResponseNeeds::Nothing => return Action::Continue,
            ResponseNeeds::Blind => None,
            ResponseNeeds::Headers => Some(read_headers(MapType::HttpResponseHeaders)),
        };
        let edits = self
            .request
            .on_response_headers(t, metrics, headers.as_ref(), end_of_stream);
        write_edits(MapType::HttpResponseHeaders, &edits);
        // Held until the body is known to be rewritable (or replaced by the 502); needs the
        // Wasm filter's allow_on_headers_stop_iteration (see `host`).
        if self.request.holds_response_headers() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers(Direction::Response)
    }
}
