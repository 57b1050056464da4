//! Invalid documents: detected where serde_json refuses them, nesting capped, and corrupted
//! documents agreeing with serde_json.

use super::generate::{gen_value, Rng};
use super::*;

#[test]
fn invalid_documents_are_detected() {
    let (_, ops) = compile(r#"{"strip":["a"],"add":{"z":1},"rename":{"r":"s"}}"#);
    let invalid: &[&[u8]] = &[
        b"",
        b"   ",
        b"{",
        br#"{"a":1"#,
        br#"{"a":1,}"#,
        br#"{"a" 1}"#,
        br#"{"a":}"#,
        br#"{a:1}"#,
        br#"{"a":1}}"#,
        br#"{"a":1} x"#,
        br#"{"a":1}{}"#,
        br#"[1,2"#,
        br#"[1,]"#,
        br#"[,1]"#,
        br#"[1 2]"#,
        br#""unterminated"#,
        br#"{"a":"bad \x escape"}"#,
        br#"{"a":"\u12"}"#,
        br#"{"a":"\u12G4"}"#,
        br#"{"a":"\ud800"}"#,
        br#"{"a":"\udc00\ud800"}"#,
        br#"{"a":"\ud800\u0041"}"#,
        b"{\"a\":\"tab\there\"}",
        b"{\"a\":\"nl\nhere\"}",
        b"{\"a\":\"nul\x00\"}",
        b"{\"a\":\"\xff\"}",
        b"{\"a\":\"\xc0\xaf\"}",
        b"{\"a\":\"\xed\xa0\x80\"}",
        b"{\"a\":\"\xf4\x90\x80\x80\"}",
        b"{\"a\":\"\xe2\x82\"}",
        br#"{"a":01}"#,
        br#"{"a":-01}"#,
        br#"{"a":1.}"#,
        br#"{"a":.5}"#,
        br#"{"a":1e}"#,
        br#"{"a":1e+}"#,
        br#"{"a":-}"#,
        br#"{"a":+1}"#,
        br#"{"a":0x10}"#,
        br#"{"a":NaN}"#,
        br#"{"a":tru}"#,
        br#"{"a":nulll}"#,
        br#"{"a":True}"#,
        b"\xef\xbb\xbf{}",
        br#"{'a':1}"#,
        br#"{"r":1,"s":2,}"#,
        br#"{"r":1 "s":2}"#,
        br#"[{"a":1},{"a":2]"#,
        b"{\"a\":1}\x00",
    ];
    for doc in invalid {
        let shown = String::from_utf8_lossy(doc);
        assert!(
            serde_json::from_slice::<Value>(doc).is_err(),
            "serde accepts {shown}"
        );
        assert!(validate(doc).is_err(), "validate accepts {shown}");
        assert!(
            matches!(ops.rewrite(doc), BodyOutcome::Invalid(_)),
            "rewrite accepts {shown}"
        );
    }
    let e = validate(br#"{"a":[1,2,}"#).unwrap_err();
    assert_eq!((e.offset, e.reason), (10, "expected a value"));
}

#[test]
fn nesting_is_capped_without_recursion_trouble() {
    let (_, ops) = compile(r#"{"strip":["a"]}"#);
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(validate(deep(MAX_DEPTH).as_bytes()), Ok(()));
    assert!(validate(deep(MAX_DEPTH + 1).as_bytes()).is_err());
    assert!(validate(deep(100_000).as_bytes()).is_err());
    let objects = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    assert!(matches!(
        ops.rewrite(objects.as_bytes()),
        BodyOutcome::Invalid(_)
    ));
    let ok = format!("{}1{}", r#"{"b":"#.repeat(100), "}".repeat(100));
    assert_eq!(ops.rewrite(ok.as_bytes()), BodyOutcome::Unchanged);
}

#[test]
fn corrupted_documents_agree_with_serde_json() {
    let mut rng = Rng(42);
    let (config, ops) = compile(
        r#"{"strip":["a","items[*].id"],"rename":{"b":"c"},"add":{"meta.x":1},"set":{"x":2}}"#,
    );
    let mut mismatches = Vec::new();
    for _ in 0..20_000 {
        let mut doc = String::new();
        gen_value(&mut rng, 0, &mut doc);
        let mut bytes = doc.into_bytes();
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes.truncate(at);
            }
            1 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                let pick = b"{}[]\",:\\0e-. \x01\xc3tu";
                bytes[at] = pick[rng.below(pick.len())];
            }
            2 => {
                let at = rng.below(bytes.len() + 1);
                let pick = b"{}[]\",:\\0e-. \x80";
                bytes.insert(at, pick[rng.below(pick.len())]);
            }
            _ => {}
        }
        let serde = serde_json::from_slice::<Value>(&bytes);
        if serde
            .as_ref()
            .is_err_and(|e| e.to_string().contains("number out of range"))
        {
            // Valid JSON (RFC 8259 sets no range) that serde_json cannot represent.
            assert!(validate(&bytes).is_ok());
            continue;
        }
        let serde_ok = serde.is_ok();
        let ours = validate(&bytes).is_ok();
        if serde_ok != ours {
            mismatches.push(String::from_utf8_lossy(&bytes).into_owned());
        } else if serde_ok {
            check_compiled(&config, &ops, &bytes);
        } else {
            assert!(matches!(ops.rewrite(&bytes), BodyOutcome::Invalid(_)));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
