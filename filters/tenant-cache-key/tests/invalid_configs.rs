//! Every refused configuration in `tests/fixtures/invalid/<case>.json` must fail with exactly the
//! message in `<case>.expected` (one line: Envoy's log shows it as is).
//! `TENANT_BLESS=1 cargo test -p tenant-cache-key --test invalid_configs` rewrites the expectations.

use std::path::Path;
use tenant_cache_key::TenantPolicy;

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let bless = std::env::var_os("TENANT_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "fixtures missing: {cases:?}");
    for case in cases {
        let config = std::fs::read(&case).unwrap();
        let message = match TenantPolicy::new(&config) {
            Ok(_) => panic!("{} was accepted", case.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            !message.contains('\n'),
            "{}: message spans lines: {message}",
            case.display()
        );
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, format!("{message}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        assert_eq!(
            message,
            expected.trim_end_matches('\n'),
            "{}",
            case.display()
        );
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
