//! Every refused configuration in `tests/fixtures/invalid/<case>.json` must fail with exactly the
//! message in `<case>.expected` (one line: Envoy's log shows it as is), which names the field
//! and the reason. `JWT_AUTH_BLESS=1 cargo test -p jwt-auth --test invalid_configs` rewrites
//! the expectations.

use jwt_auth::config::FilterConfig;
use std::path::Path;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid")
}

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let dir = fixtures();
    let bless = std::env::var_os("JWT_AUTH_BLESS").is_some();
    let checked = filter_core::config::check_invalid_fixtures(&dir, bless, |c| {
        FilterConfig::parse(c).map(drop)
    });
    match checked {
        Ok(n) => assert!(n >= 51, "fixtures missing: {n} cases in {}", dir.display()),
        Err(failures) => panic!("{failures}"),
    }
}

/// A local JWKS refused at load names the key by index and kid, never its secret.
#[test]
fn a_refused_hmac_secret_is_not_echoed() {
    let config = std::fs::read(fixtures().join("local_jwks_short_hmac_secret.json")).unwrap();
    let message = FilterConfig::parse(&config).unwrap_err().to_string();
    assert!(
        message.contains("providers.idp.local_jwks.inline"),
        "{message}"
    );
    assert!(message.contains("shorter than 32 bytes"), "{message}");
    assert!(!message.contains("c2hvcnQtc2VjcmV0LXZhbHVl"), "{message}");
    assert!(!message.contains("short-secret-value"), "{message}");
}
