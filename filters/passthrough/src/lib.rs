//! The do-nothing filter, and probes that price single proxy-wasm host calls.
//!
//! With an empty configuration (`{}`) the filter does nothing: Envoy still creates a context per
//! request and calls every proxy-wasm callback into the VM, so its cost is the floor under every
//! wasm filter. The optional probe settings make each request perform N of one host call, so the
//! benchmark can price a host call as (time per request with N calls - floor) / N.

use filter_core::host::{Action, Map};
use filter_core::{ConfigError, Host, HttpFilter, Plugin};
use serde::Deserialize;
use std::rc::Rc;

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
    /// Read a property (`property_path`, default `request.path`) this many times (one host
    /// call each).
    #[serde(default)]
    pub get_property: u32,
    /// The property `get_property` reads (`["xds", "route_metadata", ...]`).
    #[serde(default)]
    pub property_path: Vec<String>,
    /// Diagnostics: the last property read goes back to the client, hex-encoded, in the
    /// response header `x-probe-property` (`absent` when the host had none).
    #[serde(default)]
    pub echo_property: bool,
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

/// The plugin: the probe, run over any host.
pub struct PassthroughPlugin<H: Host> {
    host: H,
    probe: Probe,
}

impl<H: Host> Plugin for PassthroughPlugin<H> {
    type Host = H;
    type Http = Passthrough<H>;
    const NAME: &'static str = "passthrough";

    fn configure(host: H, config: &[u8]) -> Result<Self, ConfigError> {
        Ok(PassthroughPlugin {
            host,
            probe: Probe::parse(config)?,
        })
    }

    fn http_context(self: &Rc<Self>, _context_id: u32) -> Passthrough<H> {
        Passthrough((!self.probe.is_noop()).then(|| Rc::clone(self)), None)
    }
}

/// One request: nothing at all, or the probe's host calls on the request headers.
pub struct Passthrough<H: Host>(Option<Rc<PassthroughPlugin<H>>>, Option<String>);

impl<H: Host> HttpFilter for Passthrough<H> {
    fn on_request_headers(&mut self, _end_of_stream: bool) -> Action {
        let Some(p) = &self.0 else {
            return Action::Continue;
        };
        let (host, probe) = (&p.host, &p.probe);
        for _ in 0..probe.read_header_map {
            let _ = host.headers(Map::RequestHeaders);
        }
        for _ in 0..probe.get_header {
            let _ = host.header(Map::RequestHeaders, ":path");
        }
        for _ in 0..probe.set_header {
            host.set_header(Map::RequestHeaders, "x-probe", Some("1"));
        }
        let default_path = ["request", "path"];
        let path: Vec<&str> = if probe.property_path.is_empty() {
            default_path.to_vec()
        } else {
            probe.property_path.iter().map(String::as_str).collect()
        };
        let mut last = None;
        for _ in 0..probe.get_property {
            last = host.property(&path);
        }
        if probe.echo_property {
            self.1 = Some(last.map_or_else(|| "absent".to_owned(), |v| hex(&v)));
        }
        Action::Continue
    }

    fn on_response_headers(&mut self, _end_of_stream: bool) -> Action {
        if let (Some(p), Some(echo)) = (&self.0, &self.1) {
            p.host
                .set_header(Map::ResponseHeaders, "x-probe-property", Some(echo));
        }
        Action::Continue
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    filter_core::wasm::start::<PassthroughPlugin<filter_core::wasm::WasmHost>>();
}}

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

    #[test]
    fn the_probe_makes_its_host_calls_and_the_floor_none() {
        use filter_core::testing::FakeHost;
        let host = FakeHost::at(0);
        host.set_map(Map::RequestHeaders, [(":path", "/a")]);
        let probe = br#"{"set_header":2}"#;
        let p = Rc::new(PassthroughPlugin::configure(host.clone(), probe).unwrap());
        assert_eq!(p.http_context(1).on_request_headers(true), Action::Continue);
        assert_eq!(
            host.map_of(1, Map::RequestHeaders).get("x-probe"),
            Some("1")
        );
        let floor = Rc::new(PassthroughPlugin::configure(host.clone(), b"").unwrap());
        assert!(
            floor.http_context(2).0.is_none(),
            "the floor holds nothing per request"
        );
    }
}
