//! The proxy-wasm entry point (wasm32, feature `plugin`): [`crate::plugin::TransformPlugin`]
//! over Envoy's host calls.

proxy_wasm::main! {{
    filter_core::wasm::start::<crate::plugin::TransformPlugin<filter_core::wasm::WasmHost>>();
}}
