//! Every refused configuration in `tests/fixtures/invalid/<case>.json` must fail with exactly the
//! message in `<case>.expected` (one line: Envoy's log shows it as is).
//! `TRANSFORM_BLESS=1 cargo test -p transform --test invalid_configs` rewrites the expectations.

use std::path::Path;
use transform::Transformer;

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let bless = std::env::var_os("TRANSFORM_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 13, "fixtures missing: {cases:?}");
    for case in cases {
        let config = std::fs::read(&case).unwrap();
        let message = match Transformer::new(&config) {
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
