//! The do-nothing filter. Envoy still creates a context per request and calls every proxy-wasm
//! callback into the VM, so its cost is the floor under every wasm filter (see the README's
//! benchmark section).

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| Box::new(PassthroughRoot));
    }}

    struct PassthroughRoot;
    impl Context for PassthroughRoot {}
    impl RootContext for PassthroughRoot {
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Passthrough))
        }
    }

    struct Passthrough;
    impl Context for Passthrough {}
    impl HttpContext for Passthrough {}
}
