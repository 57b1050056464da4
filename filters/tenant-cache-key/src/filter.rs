//! The tenant_cache_key module's entry point (wasm32, feature `plugin`): the plugin
//! ([`crate::plugin::TenantPlugin`]) run by filter-core's proxy-wasm root and HTTP contexts.

proxy_wasm::main! {{
    filter_core::wasm::start::<crate::plugin::TenantPlugin<filter_core::wasm::WasmHost>>();
}}
