//! The jwt_auth plugin's wasm entry point (wasm32, feature `plugin`): [`crate::plugin`] run by
//! filter-core's root and HTTP contexts over Envoy's host calls.

proxy_wasm::main! {{ filter_core::wasm::start::<crate::plugin::JwtPlugin<filter_core::wasm::WasmHost>>(); }}
