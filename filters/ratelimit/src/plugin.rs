//! The ratelimit plugin over any [`Host`]: a request's headers are read once and decided
//! against its pool; an admitted request's response carries the limit's `X-RateLimit-*`.
//! `filter` (wasm32) runs it in Envoy; the glue tests drive it over `FakeHost`.

use crate::config::Config;
use crate::host::{limit_headers, Limiter, RateHeaders, Verdict, PLUGIN};
use filter_core::host::{Action, Map};
use filter_core::route::RouteFacts;
use filter_core::{ConfigError, Host, HttpFilter, Plugin};
use std::rc::Rc;

/// A VM's ratelimit state.
pub struct RateLimitPlugin<H: Host> {
    pub limiter: Limiter<H>,
}

impl<H: Host> Plugin for RateLimitPlugin<H> {
    type Host = H;
    type Http = RateLimitRequest<H>;
    const NAME: &'static str = PLUGIN;

    fn configure(host: H, config: &[u8]) -> Result<Self, ConfigError> {
        let config = Config::parse(config)?;
        Ok(RateLimitPlugin {
            limiter: Limiter::new(host, config),
        })
    }

    fn tick(&self) {
        self.limiter.tick();
    }

    fn flush(&self) {
        self.limiter.metrics.flush();
    }

    fn on_grpc_call_response(&self, token: u32, status: u32, size: usize) {
        self.limiter.on_lease_response(token, status, size);
    }

    fn http_context(self: &Rc<Self>, context_id: u32) -> RateLimitRequest<H> {
        RateLimitRequest {
            plugin: Rc::clone(self),
            context_id,
            headers: None,
        }
    }
}

/// One request.
pub struct RateLimitRequest<H: Host> {
    plugin: Rc<RateLimitPlugin<H>>,
    context_id: u32,
    headers: Option<RateHeaders>,
}

impl<H: Host> RateLimitRequest<H> {
    fn host(&self) -> &H {
        self.plugin.limiter.host()
    }
}

impl<H: Host> HttpFilter for RateLimitRequest<H> {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let headers = self.host().headers(Map::RequestHeaders);
        let limiter = &self.plugin.limiter;
        let facts = RouteFacts::read(limiter.host(), limiter.route_needs());
        match limiter.on_request(self.context_id, &headers, &facts) {
            Verdict::Continue(h) => {
                self.headers = h;
                Action::Continue
            }
            Verdict::Answered | Verdict::Paused => Action::Pause,
        }
    }

    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        let limiter = &self.plugin.limiter;
        let headers = self
            .headers
            .or_else(|| limiter.take_resumed_headers(self.context_id));
        if let Some(h) = headers {
            let now = self.host().now_ms();
            for (name, value) in limit_headers(h.limit, h.remaining, now) {
                self.host()
                    .set_header(Map::ResponseHeaders, name, Some(&value));
            }
        }
        Action::Continue
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        self.plugin.limiter.on_lease_response(token, status, size);
    }

    fn on_done(&mut self) {
        self.plugin.limiter.on_done(self.context_id);
    }
}
