//! Shared building blocks of the edgegate proxy-wasm filters.
//!
//! Everything here except [`wasm`] is plain Rust that builds and tests natively: config parsing
//! with field-naming errors ([`config`]), the request match used by every filter's rule table
//! ([`matching`]), the header list the host hands over in one call ([`headers`]) and the
//! shared-data seam with its compare-and-swap loop ([`shared`]). The `wasm`
//! module (compiled only for `wasm32`) holds the few proxy-wasm glue helpers the filters share.

pub mod config;
pub mod headers;
pub mod matching;
pub mod shared;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use config::{parse_json_config, ConfigError};
pub use headers::HeaderMap;
pub use matching::{RequestMatch, RequestMatcher};
