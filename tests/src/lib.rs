//! The integration-test harness: real processes on loopback, torn down on drop.
//!
//! - [`envoy`]: renders an Envoy config template, validates it with `envoy --mode validate`,
//!   starts Envoy on OS-chosen ports, waits for `/ready`, reads its listener ports back from the
//!   admin API, prints its log when a test fails and kills it on drop.
//! - [`upstream`]: in-process HTTP upstreams whose replies a test scripts and whose received
//!   requests it inspects.
//! - [`jwks`]: a JWKS endpoint whose answers (keys, errors, garbage, delays) a test controls.
//! - [`redis`]: private `redis-server` instances and a 3-master cluster.
//! - [`tools`]: where the real binaries live (`.venv/bin/envoy`, `dist/*.wasm`), failing with
//!   the install command when one is missing.
//! - [`stages`]: the gateway's wasm stage configurations, for the bundle's tests and benchmark.
//! - [`wait`]: polling with a deadline instead of sleeps.
//! - [`demo`]: `make demo`'s processes, ports and banner (shared with the demo and compose tests).
//! - [`containers`], [`oci`], [`registry`], [`compose`]: podman and skopeo as the repository runs
//!   them, the wasm filters' OCI images (`make oci`), a private registry for tests, the compose
//!   file brought up with podman-compose.

pub mod bench;
pub mod chain;
pub mod compose;
pub mod containers;
pub mod demo;
pub mod envoy;
pub mod gateway;
pub mod gateway_config;
pub mod inventory;
pub mod jwks;
pub mod oci;
pub mod policy_check;
pub mod process;
pub mod ratelimit;
pub mod registry;
pub use test_harness::{redis, wait};
pub mod stages;
pub mod template;
pub mod tools;
pub mod upstream;
