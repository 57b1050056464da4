//! The bundle module's entry point (wasm32): the plugin ([`crate::plugin::BundlePlugin`]) run
//! by filter-core's proxy-wasm root and HTTP contexts.

proxy_wasm::main! {{
    filter_core::wasm::start::<crate::plugin::BundlePlugin<filter_core::wasm::WasmHost>>();
}}
