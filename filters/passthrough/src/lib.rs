//! The do-nothing filter, and probes that price single proxy-wasm host calls.
//!
//! With an empty configuration (`{}`) the filter does nothing: Envoy still creates a context per
//! request and calls every proxy-wasm callback into the VM, so its cost is the floor under every
//! wasm filter. The optional probe settings make each request perform N of one host call, so the
//! benchmark can price a host call as (time per request with N calls - floor) / N.

use filter_core::ConfigError;
use serde::Deserialize;

/// Per-request work to add on top of the floor (all zero/false by default).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// Read the whole request header map this many times (one host call each).
    #[serde(default)]
    pub read_header_map: u32,
    /// Look up one request header by name this many times (one host call each).
    #[serde(default)]
    pub get_header: u32,
    /// Set a request header this many times (one host call each).
    #[serde(default)]
    pub set_header: u32,
    /// Read a property (`request.path`) this many times (one host call each).
    #[serde(default)]
    pub get_property: u32,
}

impl Probe {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        filter_core::parse_json_config(bytes)
    }

    pub fn is_noop(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_floor() {
        assert!(Probe::parse(b"").unwrap().is_noop());
        assert!(Probe::parse(b"{}").unwrap().is_noop());
        assert_eq!(
            Probe::parse(br#"{"get_header":10}"#).unwrap().get_header,
            10
        );
        assert_eq!(Probe::parse(br#"{"nope":1}"#).unwrap_err().field, "nope");
    }
}

#[cfg(target_arch = "wasm32")]
mod filter {
    use super::Probe;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| Box::new(PassthroughRoot { probe: Probe::default() }));
    }}

    struct PassthroughRoot {
        probe: Probe,
    }

    impl Context for PassthroughRoot {}

    impl RootContext for PassthroughRoot {
        fn on_configure(&mut self, _size: usize) -> bool {
            let bytes = self.get_plugin_configuration().unwrap_or_default();
            match Probe::parse(&bytes) {
                Ok(probe) => {
                    self.probe = probe;
                    true
                }
                Err(e) => {
                    filter_core::wasm::log_config_error("passthrough", &e);
                    false
                }
            }
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            if self.probe.is_noop() {
                Some(Box::new(Passthrough))
            } else {
                Some(Box::new(Probing(self.probe.clone())))
            }
        }
    }

    struct Passthrough;
    impl Context for Passthrough {}
    impl HttpContext for Passthrough {}

    struct Probing(Probe);
    impl Context for Probing {}
    impl HttpContext for Probing {
        fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
            for _ in 0..self.0.read_header_map {
                let _ = self.get_http_request_headers_bytes();
            }
            for _ in 0..self.0.get_header {
                let _ = self.get_http_request_header_bytes(":path");
            }
            for _ in 0..self.0.set_header {
                self.set_http_request_header("x-probe", Some("1"));
            }
            for _ in 0..self.0.get_property {
                let _ = self.get_property(vec!["request", "path"]);
            }
            Action::Continue
        }
    }
}
