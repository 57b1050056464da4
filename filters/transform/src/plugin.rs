//! The transform plugin, host-free: [`TransformPlugin`] is a VM's state (the compiled
//! [`Transformer`] and the counters), [`TransformHttp`] one request. Each request reads a header
//! map at most once per direction, writes the planned edits with one [`Host::write_edits`],
//! buffers bodies and holds the response headers while a response body may yet be refused.
//! Every decision comes from [`Transformer`]; the per-request state and the body host calls are
//! in [`crate::host`]. In Envoy, `filter_core::wasm::start` runs it (see `filter.rs`); natively,
//! the glue tests drive it over `filter_core::testing::FakeHost`.

use crate::host::{Direction, ResponseNeeds, TransformMetrics, TransformRequest, PLUGIN};
use crate::transformer::Transformer;
use filter_core::host::{Host, Map};
use filter_core::route::RouteFacts;
use filter_core::{Action, ConfigError, HttpFilter, Plugin};
use std::rc::Rc;

/// One configuration of the plugin: what every request of the VM shares.
#[derive(Debug)]
pub struct TransformPlugin<H: Host> {
    host: H,
    transformer: Transformer,
    metrics: TransformMetrics<H>,
}

impl<H: Host> Plugin for TransformPlugin<H> {
    type Host = H;
    type Http = TransformHttp<H>;
    const NAME: &'static str = PLUGIN;

    fn configure(host: H, config: &[u8]) -> Result<Self, ConfigError> {
        let transformer = Transformer::new(config)?;
        let metrics = TransformMetrics::define(&host);
        Ok(TransformPlugin {
            host,
            transformer,
            metrics,
        })
    }

    /// The batched counters reach the host once per [`filter_core::plugin::TICK`].
    fn flush(&self) {
        self.metrics.flush();
    }

    fn http_context(self: &Rc<Self>, _context_id: u32) -> TransformHttp<H> {
        TransformHttp {
            plugin: Rc::clone(self),
            request: TransformRequest::new(self.host.clone()),
        }
    }
}

/// One request through the plugin.
#[derive(Debug)]
pub struct TransformHttp<H: Host> {
    plugin: Rc<TransformPlugin<H>>,
    request: TransformRequest<H>,
}

impl<H: Host> TransformHttp<H> {
    fn on_body(&mut self, direction: Direction, body_size: usize, end_of_stream: bool) -> Action {
        let p = &*self.plugin;
        self.request.on_body(
            &p.transformer,
            &p.metrics,
            direction,
            body_size,
            end_of_stream,
        )
    }

    fn on_trailers(&mut self, direction: Direction) -> Action {
        let p = &*self.plugin;
        self.request
            .on_trailers_counted(&p.transformer, &p.metrics, direction)
    }
}

impl<H: Host> HttpFilter for TransformHttp<H> {
    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let p = &*self.plugin;
        let headers = p.host.headers(Map::RequestHeaders);
        let t = &p.transformer;
        let facts = RouteFacts::read(&p.host, t.routes().map(|b| b.needs()).unwrap_or_default());
        let plan = match t.route_choice(&facts) {
            Ok(choice) => t.request_plan_on(&headers, choice),
            Err(refusal) => {
                refusal.send(&p.host, headers.get("x-request-id"));
                return Action::Pause;
            }
        };
        let edits = self.request.accept_plan(plan, &p.metrics, end_of_stream);
        p.host.write_edits(Map::RequestHeaders, &edits);
        Action::Continue
    }

    fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_request_trailers(&mut self) -> Action {
        self.on_trailers(Direction::Request)
    }

    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        let p = &*self.plugin;
        let headers = match self.request.response_needs(&p.transformer) {
            ResponseNeeds::Nothing => return Action::Continue,
            ResponseNeeds::Blind => None,
            ResponseNeeds::Headers => Some(p.host.headers(Map::ResponseHeaders)),
        };
        let edits = self.request.on_response_headers(
            &p.transformer,
            &p.metrics,
            headers.as_ref(),
            end_of_stream,
        );
        p.host.write_edits(Map::ResponseHeaders, &edits);
        // Held until the body is known to be rewritable (or replaced by the 502); needs the
        // Wasm filter's allow_on_headers_stop_iteration (see `crate::host`).
        if self.request.holds_response_headers() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_response_trailers(&mut self) -> Action {
        self.on_trailers(Direction::Response)
    }
}
