//! The proxy-wasm entry point (wasm32): [`crate::plugin::AggregatePlugin`] over Envoy's host calls.

proxy_wasm::main! {{
    filter_core::wasm::start::<crate::plugin::AggregatePlugin<filter_core::wasm::WasmHost>>();
}}
