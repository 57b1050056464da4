//! The plugin configuration: any bytes give a validated config or a ConfigError naming a
//! field, never a panic (a panic in on_configure would take the VM down).
#![no_main]

use jwt_auth::config::FilterConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = FilterConfig::parse(data) {
        assert!(!e.to_string().contains('\n'));
    }
});
