//! `tenant_cache_key`: tenant isolation for Envoy (proxy-wasm). Resolves the tenant of a request
//! from sources the gateway trusts (a verified JWT claim, an API key, the host, a path segment, a
//! default), removes every client-supplied copy of the tenant header and sets the resolved one;
//! on the response, adds the tenant header to `Vary`, makes authenticated responses without a
//! tenant private, and applies per-route cache lifetimes — so a shared cache keeps one entry per
//! tenant and never serves one tenant's response to another.
//!
//! Layout: [`config`] is the configuration as written; [`TenantPolicy`] ([`policy`]) compiles it
//! and makes every per-request decision, using [`sources`] (resolution), [`tenant_id`] (what an
//! id may look like) and [`cache_policy`] (`Vary` and `Cache-Control`). None of these use
//! proxy-wasm. On wasm32, `host` holds the counters and the rejection reply, and `filter`
//! (feature `plugin`, on by default) is the plugin glue that reads headers with one host call
//! per phase and applies the planned edits; bundles turn `plugin` off and use `host`.

pub mod cache_policy;
pub mod config;
pub mod policy;
pub mod sources;
pub mod tenant_id;

#[cfg(all(target_arch = "wasm32", feature = "plugin"))]
mod filter;
#[cfg(target_arch = "wasm32")]
pub mod host;

#[cfg(test)]
mod policy_tests;

pub use config::{Config, Stage};
pub use policy::{
    Outcome, RequestFacts, RequestPlan, ResponseEdits, TenantPolicy, Unresolved, UNRESOLVED_ERROR,
    UNRESOLVED_MESSAGE,
};
pub use sources::SourceKind;
