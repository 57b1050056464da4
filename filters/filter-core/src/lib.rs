//! Shared building blocks of the edgegate proxy-wasm filters.
//!
//! Everything here except [`wasm`] is plain Rust that builds and tests natively: config parsing
//! with field-naming errors ([`config`]), the request match used by every filter's rule table
//! ([`matching`]), the header list and the one header-edit type ([`headers`]), the host as a
//! trait with counters and JSON replies over it ([`host`]), the refusal reasons the audit log
//! reads ([`audit`]), the plugin skeleton every filter
//! implements ([`plugin`]) and the shared-data seam with its compare-and-swap loop ([`shared`]).
//! [`testing`] (feature `testing`) is a recording fake host for native tests of the glue; `wasm`
//! (compiled only for `wasm32`) is the same host over proxy-wasm and the root/HTTP contexts that
//! run any plugin in Envoy.

pub mod audit;
pub mod config;
pub mod headers;
pub mod host;
pub mod matching;
pub mod plugin;
pub mod route;
pub mod shared;
pub mod string_match;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use config::{parse_json_config, ConfigError};
pub use headers::{HeaderEdit, HeaderMap};
pub use host::{Action, Host};
pub use matching::{RequestMatch, RequestMatcher};
pub use plugin::{HttpFilter, Plugin};
pub use string_match::{StringMatch, StringMatcher};
