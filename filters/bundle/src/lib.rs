//! `bundle`: jwt_auth -> tenant_cache_key (request stage) -> transform as one proxy-wasm module
//! (`dist/bundle.wasm`).
//!
//! Every proxy-wasm filter pays a per-request VM floor (entering the VM, reading the header map,
//! writing edits back), so three filters in a row pay it three times. This module runs the three
//! filters' own engines in one VM pass: the request headers are read once, each stage edits an
//! in-VM copy (a later stage sees the earlier stages' edits, exactly as in three filters in a
//! row), and only the net difference goes back to the host.
//!
//! Layout: [`config`] parses the plugin configuration (a section per stage, each in that
//! filter's own format); [`pipeline`] runs the stages after authentication on the copy, with the
//! host's part of each stage (counters, local replies, body state) behind
//! [`pipeline::StageEffects`]; [`plugin`] is the plugin over any `filter_core::Host`, driving
//! jwt_auth's `WorkerAuth` (JWKS fetches, paused requests, revocation) and the other filters'
//! host helpers. All of it is host-free and tested natively; `filter` (wasm32) is the entry
//! point.

pub mod config;
pub mod pipeline;
pub mod plugin;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(test)]
mod glue_tests;

pub use config::BundleConfig;
pub use pipeline::{Flow, Pipeline, StageEffects};
pub use plugin::{BundlePlugin, BundleRequest};
