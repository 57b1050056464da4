//! A proxy-wasm JWT authentication filter with Envoy `jwt_authn`'s configuration vocabulary.
//!
//! Everything except `filter` (the wasm entry point, compiled only for `wasm32`) builds and is
//! tested natively:
//! [`config`] validates the plugin configuration, [`token`] extracts and parses tokens,
//! [`jwks`] turns JWKS documents into keys, [`verify`] checks signatures, [`claims`] and
//! [`authz`] check claims, [`identity`] vets the claims forwarded as identity headers,
//! [`rules`] evaluates requirements, [`cache`] remembers verified tokens, [`jwks_cache`] is
//! the JWKS refresh state machine, [`revocation`] syncs revoked token ids, [`outcome`] maps
//! failures to responses, and [`engine`] ties them into one decision per request.
//! [`host`] is the stateful glue over any `filter_core::Host` (JWKS fetches, revocation calls,
//! paused requests, counters) and [`plugin`] the `filter_core::Plugin` that Envoy runs.

pub mod authz;
pub mod cache;
pub mod claims;
pub mod config;
pub mod engine;
pub mod identity;
pub mod introspection;
pub mod jwks;
pub mod jwks_cache;
pub mod keystore;
pub mod metrics;
pub mod outcome;
pub mod revocation;
pub mod rules;
pub mod token;
pub mod verify;

#[cfg(all(target_arch = "wasm32", feature = "plugin"))]
mod filter;
pub mod host;
pub mod plugin;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;
#[cfg(test)]
mod tests;
