//! Every refused configuration in `tests/fixtures/invalid/<case>.json` must fail with exactly the
//! message in `<case>.expected` (one line: Envoy's log shows it as is).
//! `AGGREGATE_BLESS=1 cargo test -p aggregate --test invalid_configs` rewrites the expectations.

use aggregate::Config;
use std::path::Path;

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let bless = std::env::var_os("AGGREGATE_BLESS").is_some();
    let checked =
        filter_core::config::check_invalid_fixtures(&dir, bless, |c| Config::parse(c).map(drop));
    match checked {
        Ok(n) => assert!(n >= 15, "fixtures missing: {n} cases in {}", dir.display()),
        Err(failures) => panic!("{failures}"),
    }
}
