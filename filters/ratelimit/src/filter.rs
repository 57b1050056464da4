//! The ratelimit module's entry point (wasm32, feature `plugin`).

proxy_wasm::main! {{
    filter_core::wasm::start::<crate::plugin::RateLimitPlugin<filter_core::wasm::WasmHost>>();
}}
