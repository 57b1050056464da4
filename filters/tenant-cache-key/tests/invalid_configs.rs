//! Every refused configuration in `tests/fixtures/invalid/<case>.json` must fail with exactly the
//! message in `<case>.expected` (one line: Envoy's log shows it as is).
//! `TENANT_BLESS=1 cargo test -p tenant-cache-key --test invalid_configs` rewrites the expectations.

use std::path::Path;
use tenant_cache_key::TenantPolicy;

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let bless = std::env::var_os("TENANT_BLESS").is_some();
    let checked = filter_core::config::check_invalid_fixtures(&dir, bless, |c| {
        TenantPolicy::new(c).map(drop)
    });
    match checked {
        Ok(n) => assert!(n >= 20, "fixtures missing: {n} cases in {}", dir.display()),
        Err(failures) => panic!("{failures}"),
    }
}

/// A raw key pasted where its digest belongs must never reach Envoy's log.
#[test]
fn a_pasted_key_is_not_echoed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let config = std::fs::read(dir.join("api_key_not_a_digest.json")).unwrap();
    let message = TenantPolicy::new(&config).unwrap_err().to_string();
    assert!(message.contains("keys[0].sha256"), "{message}");
    assert!(!message.contains("sk_live"), "{message}");
}
