//! `tenant_cache_key`: tenant isolation for Envoy (proxy-wasm). Resolves the tenant of a request
//! from sources the gateway trusts (a verified JWT claim, an API key, the host, a path segment, a
//! default), removes every client-supplied copy of the tenant header and sets the resolved one
//! (a tenant no credential proved is written as `~id` when the policy also has credential
//! sources, so it never shares a cache entry, a rate-limit bucket or an upstream identity with
//! the proven one). On cache routes the upstream request loses its user identity headers (a
//! cached answer is tenant-wide). On the response, adds the tenant header to `Vary`, makes
//! authenticated responses without a tenant private, applies per-route cache lifetimes, and
//! makes the answer to a credentialed request `private` on its way to the client — so a shared
//! cache keeps one entry per tenant and never serves one tenant's response to another. On
//! `streams` routes, caps the long-lived streams (WebSockets, gRPC) each consumer and each tenant
//! holds open at once, counted across every worker of the Envoy process.
//!
//! Layout: [`config`] is the configuration as written; [`TenantPolicy`] ([`policy`]) compiles it
//! and makes every per-request decision, using [`sources`] (resolution), [`tenant_id`] (what an
//! id may look like), [`cache_policy`] (`Vary` and `Cache-Control`) and [`streams`] (the
//! in-flight counts, behind a shared-data seam). [`host`] holds the counters, the stream counts
//! on shared data and the rejection replies, and [`plugin`] is the plugin (one header-map read
//! per phase, the planned edits written back), both generic over `filter_core::Host` and tested
//! natively; `filter` (wasm32, feature `plugin`, on by default) is the module's entry point.
//! Bundles turn `plugin` off and use [`host`].

pub mod cache_policy;
pub mod config;
pub mod policy;
pub mod sources;
pub mod streams;
pub mod tenant_id;

#[cfg(all(target_arch = "wasm32", feature = "plugin"))]
mod filter;
pub mod host;
pub mod metrics;
pub mod plugin;

#[cfg(test)]
mod glue_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod streams_tests;

pub use config::{Config, Stage};
pub use policy::{
    OnRoute, Outcome, RequestFacts, RequestPlan, ResponseEdits, RoutePolicy, TenantPolicy,
    Unresolved, INVALID_API_KEY_ERROR, INVALID_API_KEY_MESSAGE, UNRESOLVED_ERROR,
    UNRESOLVED_MESSAGE,
};
pub use sources::{Context, SourceKind};
pub use streams::{Admission, Limit, SharedStore, StreamClaim, StreamLimits, StreamTracker};
