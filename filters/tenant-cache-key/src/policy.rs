//! The compiled configuration and every per-request decision: which headers to remove and set
//! on the request, and which `Vary` / `Cache-Control` to write on the response.
//!
//! The configuration is checked and compiled in `compile`; the request phase's plan is made in
//! `request` ([`RequestPlan`]), the response phase's edits in `response` ([`ResponseEdits`]).

use crate::cache_policy::CacheRoute;
use crate::config::Stage;
use crate::sources::{Context, KeyRefusal, Source, SourceKind};
use crate::streams::StreamLimits;
use filter_core::route::RouteBinding;
use filter_core::RequestMatcher;

mod compile;
mod request;
mod response;

pub use request::RequestPlan;
pub use response::ResponseEdits;

/// The validated configuration of one filter instance.
#[derive(Debug, Clone)]
pub struct TenantPolicy {
    stage: Stage,
    tenant_header: String,
    plan_header: Option<String>,
    sources: Vec<Source>,
    /// Some source is a credential (claim, api_key): tenants from the others are written with
    /// [`UNVERIFIED_PREFIX`](crate::config::UNVERIFIED_PREFIX).
    namespace_unverified: bool,
    /// A source needs the verified client certificate, and this stage resolves tenants: the
    /// host reads the peer certificate (two property reads) only then.
    reads_client_cert: bool,
    max_len: usize,
    unresolved: Unresolved,
    credential_headers: Vec<String>,
    public_routes: Vec<RequestMatcher>,
    identity_headers: Vec<String>,
    vary: bool,
    cache_routes: Vec<CacheRoute>,
    streams: Option<StreamLimits>,
    /// Route policies (`edgegate.tenant`); `None`: the deprecated matchers decide.
    routes: Option<RouteBinding<RoutePolicy>>,
}

/// The reserved route policy of routes where this filter resolves nothing (the client's tenant
/// and plan headers are still removed).
pub const NONE: &str = "none";

/// A compiled route policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    pub stream: bool,
    pub public: bool,
    /// Index of the policy's lifetime in the cache routes.
    pub cache: Option<usize>,
}

/// What the route Envoy matched asks of this filter for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRoute<'a> {
    /// No route policies: the deprecated matchers decide.
    Matchers,
    Policy(&'a RoutePolicy),
    /// The route names `none`, or Envoy answers it itself: resolve nothing, only remove the
    /// client's copies of the owned headers.
    Exempt,
}

/// What to do with a request no source identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    Reject { status: u32 },
    Anonymous,
}

/// The result of resolution for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Resolved(SourceKind),
    /// No tenant; the request goes on without one.
    Anonymous,
    /// No tenant; answer with this status and a JSON error.
    Reject {
        status: u32,
    },
    /// The request presents an API key that does not verify: answered with 401 and a JSON
    /// error, never resolved by a later (weaker) source.
    InvalidApiKey(KeyRefusal),
    /// A response-stage instance resolves nothing.
    NotResolving,
    /// The route names no tenant policy here ([`OnRoute::Exempt`]): nothing resolved.
    Exempt,
}

/// What the response phase needs to know about the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The request carries a tenant (resolved here, or set by the request-stage instance).
    pub tenant: bool,
    /// One of the credential headers was present.
    pub authenticated: bool,
    /// Index of the cache route (the first matching one, or the route policy's).
    pub route: Option<usize>,
    /// Resolving stages: the request was credentialed (a credential header, or a tenant a
    /// credential source proved) and is on no public route, so the answer leaves the gateway
    /// `Cache-Control: private`, cache hits included.
    pub private: bool,
}

/// The error body's `error` field for a rejected request.
pub const UNRESOLVED_ERROR: &str = "tenant_unresolved";
/// The error body's `message` for a rejected request.
pub const UNRESOLVED_MESSAGE: &str = "the request does not identify a tenant";
/// The error body's `error` field for an API key that does not verify (status 401).
pub const INVALID_API_KEY_ERROR: &str = "invalid_api_key";
/// The error body's `message` for an API key that does not verify (the key is never echoed).
pub const INVALID_API_KEY_MESSAGE: &str = "the API key is not valid";

impl TenantPolicy {
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The request's [`Context`] at `now_ms`: the peer certificate is read through `property`
    /// only when a source needs it (decided at configuration time).
    pub fn context(&self, now_ms: u64, property: impl Fn(&[&str]) -> Option<Vec<u8>>) -> Context {
        Context::read(now_ms, self.reads_client_cert, property)
    }

    pub fn tenant_header(&self) -> &str {
        &self.tenant_header
    }

    /// The route policies, when routes choose them.
    pub fn routes(&self) -> Option<&RouteBinding<RoutePolicy>> {
        self.routes.as_ref()
    }

    /// The caps on long-lived streams, when configured (request stage).
    pub fn streams(&self) -> Option<&StreamLimits> {
        self.streams.as_ref()
    }

    /// True when the response phase has something to do for a request with these facts: this
    /// instance shapes responses for caches, or the answer must leave the gateway private.
    pub fn edits_responses(&self, facts: &RequestFacts) -> bool {
        self.stage.shapes_responses() || facts.private
    }
}
