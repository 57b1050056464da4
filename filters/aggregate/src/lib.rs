//! `aggregate`: request aggregation (BFF fan-out) for Envoy (proxy-wasm). A route names an
//! endpoint; the stage calls the endpoint's legs in parallel (`dispatch_http_call`) and answers
//! the request itself with one JSON document built from their bodies.
//!
//! Layout: [`config`] parses and validates the configuration (endpoints, legs, the route
//! binding); [`request`] builds each leg's call from the client's request (path templates with
//! encoded values, forwarded headers); [`outcome`] checks a leg's answer (status, encoding,
//! limits, transform's body operations, JSON, target) and names its failure; [`aggregation`]
//! holds one request's legs and composes the answer. None of these talk to the host.
//! [`metrics`] defines the counters; [`plugin`] is the [`filter_core::Plugin`] over any
//! [`filter_core::Host`], tested natively over `filter_core::testing::FakeHost`; on wasm32,
//! with feature `plugin` (on by default), `filter` is the one-line proxy-wasm entry point; the
//! bundle turns `plugin` off and runs [`AggregatePlugin`] as its last stage.
//!
//! Path templates and body operations are transform's ([`transform::template`],
//! [`transform::body_ops`]): one implementation serves both filters.

pub mod aggregation;
pub mod cache;
pub mod config;
pub mod metrics;
pub mod outcome;
pub mod plugin;
pub mod request;

#[cfg(all(target_arch = "wasm32", feature = "plugin"))]
mod filter;

#[cfg(test)]
mod glue_tests;

pub use config::Config;
pub use plugin::{AggregateHttp, AggregatePlugin};
