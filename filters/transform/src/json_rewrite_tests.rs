//! The streaming rewriter against a `serde_json::Value` reference implementation of the same
//! operations, on hand-written, generated and corrupted documents.

use crate::body_ops::BodyOps;
use crate::config::BodyOpsConfig;
use crate::json_path::{JsonPath, Step};
use crate::json_rewrite::{validate, BodyOutcome, MAX_DEPTH};
use serde_json::{Map, Value};

// ----- reference implementation: parse, edit, compare -----

fn parents<'v>(v: &'v mut Value, steps: &[Step], f: &mut dyn FnMut(&mut Map<String, Value>)) {
    match steps.split_first() {
        None => {
            if let Value::Object(m) = v {
                f(m)
            }
        }
        Some((Step::Key(k), rest)) => {
            if let Some(child) = v.as_object_mut().and_then(|m| m.get_mut(k)) {
                parents(child, rest, f)
            }
        }
        Some((Step::Index(i), rest)) => {
            if let Some(child) = v.as_array_mut().and_then(|a| a.get_mut(*i)) {
                parents(child, rest, f)
            }
        }
        Some((Step::AnyIndex, rest)) => {
            if let Some(a) = v.as_array_mut() {
                for child in a {
                    parents(child, rest, f)
                }
            }
        }
    }
}

fn nested(keys: &[Step], value: &Value) -> Option<Value> {
    match keys.split_first() {
        None => Some(value.clone()),
        Some((Step::Key(k), rest)) => {
            let mut m = Map::new();
            m.insert(k.clone(), nested(rest, value)?);
            Some(Value::Object(m))
        }
        Some(_) => None,
    }
}

fn put(v: &mut Value, steps: &[Step], value: &Value, overwrite: bool) {
    match steps {
        [Step::Key(k)] => {
            if let Value::Object(m) = v {
                if overwrite || !m.contains_key(k) {
                    m.insert(k.clone(), value.clone());
                }
            }
        }
        [Step::Key(k), rest @ ..] => {
            if let Value::Object(m) = v {
                match m.get_mut(k) {
                    Some(child) => put(child, rest, value, overwrite),
                    None => {
                        if let Some(created) = nested(rest, value) {
                            m.insert(k.clone(), created);
                        }
                    }
                }
            }
        }
        [Step::Index(i), rest @ ..] => {
            if let Some(child) = v.as_array_mut().and_then(|a| a.get_mut(*i)) {
                put(child, rest, value, overwrite)
            }
        }
        [Step::AnyIndex, rest @ ..] => {
            if let Some(a) = v.as_array_mut() {
                for child in a {
                    put(child, rest, value, overwrite)
                }
            }
        }
        [] => {}
    }
}

fn reference(config: &BodyOpsConfig, doc: &Value) -> Value {
    let mut v = doc.clone();
    let split = |p: &str| {
        let steps = JsonPath::parse(p).unwrap().steps;
        let (last, init) = steps.split_last().unwrap();
        let Step::Key(last) = last.clone() else {
            panic!()
        };
        (init.to_vec(), last)
    };
    for p in &config.strip {
        let (init, last) = split(p);
        parents(&mut v, &init, &mut |m| {
            m.remove(&last);
        });
    }
    for (p, to) in config.rename.iter() {
        let (init, last) = split(p);
        parents(&mut v, &init, &mut |m| {
            if let Some(x) = m.remove(&last) {
                m.insert(to.clone(), x);
            }
        });
    }
    for (p, value) in config.add.iter() {
        put(&mut v, &JsonPath::parse(p).unwrap().steps, value, false);
    }
    for (p, value) in config.set.iter() {
        put(&mut v, &JsonPath::parse(p).unwrap().steps, value, true);
    }
    v
}

fn compile(ops: &str) -> (BodyOpsConfig, BodyOps) {
    let config: BodyOpsConfig = serde_json::from_str(ops).unwrap();
    let compiled = BodyOps::compile(&config).unwrap();
    (config, compiled)
}

/// Rewrites `doc` and asserts the result parses to what the reference produces.
fn check_compiled(config: &BodyOpsConfig, ops: &BodyOps, doc: &[u8]) -> BodyOutcome {
    let input: Value = serde_json::from_slice(doc).unwrap_or_else(|e| {
        panic!(
            "test document must be valid: {e}: {}",
            String::from_utf8_lossy(doc)
        )
    });
    let expected = reference(config, &input);
    let outcome = ops.rewrite(doc);
    match &outcome {
        BodyOutcome::Unchanged => assert_eq!(
            input,
            expected,
            "reported unchanged: {}",
            String::from_utf8_lossy(doc)
        ),
        BodyOutcome::Rewritten(out) => {
            let got: Value = serde_json::from_slice(out).unwrap_or_else(|e| {
                panic!(
                    "output is not JSON ({e}):\n in: {}\nout: {}",
                    String::from_utf8_lossy(doc),
                    String::from_utf8_lossy(out)
                )
            });
            assert_eq!(
                got,
                expected,
                "\n in: {}\nout: {}",
                String::from_utf8_lossy(doc),
                String::from_utf8_lossy(out)
            );
        }
        BodyOutcome::Invalid(e) => panic!("{e:?} for valid {}", String::from_utf8_lossy(doc)),
    }
    outcome
}

fn check(ops: &str, doc: &str) -> BodyOutcome {
    let (config, compiled) = compile(ops);
    check_compiled(&config, &compiled, doc.as_bytes())
}

fn rewritten(ops: &str, doc: &str) -> String {
    match check(ops, doc) {
        BodyOutcome::Rewritten(out) => String::from_utf8(out).unwrap(),
        BodyOutcome::Unchanged => doc.to_string(),
        BodyOutcome::Invalid(e) => panic!("{e:?}"),
    }
}

// ----- exact outputs: formatting is preserved -----

#[test]
fn strips_members_with_the_right_comma() {
    let ops = r#"{"strip":["b"]}"#;
    assert_eq!(rewritten(ops, r#"{"a":1,"b":2,"c":3}"#), r#"{"a":1,"c":3}"#);
    assert_eq!(rewritten(ops, r#"{"b":2,"c":3}"#), r#"{"c":3}"#);
    assert_eq!(rewritten(ops, r#"{"a":1,"b":2}"#), r#"{"a":1}"#);
    assert_eq!(rewritten(ops, r#"{"b":2}"#), r#"{}"#);
    assert_eq!(
        rewritten(ops, r#"{"b":2,"b":{"x":[1,2]},"c":3,"b":4}"#),
        r#"{"c":3}"#
    );
    assert_eq!(
        rewritten(ops, "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}"),
        "{\n  \"a\": 1,\n  \"c\": 3\n}"
    );
    assert_eq!(
        rewritten(ops, "{\n  \"b\": 2,\n  \"c\": 3\n}"),
        "{\n  \"c\": 3\n}"
    );
    assert_eq!(
        rewritten(ops, "{\n  \"a\": 1,\n  \"b\": 2\n}"),
        "{\n  \"a\": 1\n}"
    );
    // Whitespace around dropped members may stay behind; the document stays valid.
    assert_eq!(
        rewritten(r#"{"strip":["a","b"]}"#, r#"{ "a" : 1 , "b" : 2 }"#),
        r#"{  }"#
    );
    assert_eq!(check(ops, r#"{"a":1,"c":{"b":2}}"#), BodyOutcome::Unchanged);
}

#[test]
fn nested_and_wildcard_strips() {
    let ops = r#"{"strip":["debug_info","user.ssn","items[*].internal_id","items[0].x"]}"#;
    assert_eq!(
        rewritten(
            ops,
            r#"{"user":{"name":"n","ssn":"1"},"debug_info":{"t":[1]},"items":[{"id":1,"internal_id":9,"x":0},{"internal_id":8,"x":1}]}"#
        ),
        r#"{"user":{"name":"n"},"items":[{"id":1},{"x":1}]}"#
    );
    // Wrong shapes leave the document alone.
    assert_eq!(
        check(
            ops,
            r#"{"user":"ssn","items":{"internal_id":1},"x":[{"ssn":1}]}"#
        ),
        BodyOutcome::Unchanged
    );
    assert_eq!(
        rewritten(r#"{"strip":["[*].id"]}"#, r#"[{"id":1,"k":2},3,{"id":2}]"#),
        r#"[{"k":2},3,{}]"#
    );
}

#[test]
fn renames_keys_in_place() {
    let ops = r#"{"rename":{"user.fullName":"name","a":"é\"q"}}"#;
    assert_eq!(
        rewritten(ops, r#"{"a":[1],"user":{"id":1,"fullName":"Ann"}}"#),
        r#"{"é\"q":[1],"user":{"id":1,"name":"Ann"}}"#
    );
    // An existing member with the new name gives way, wherever it is.
    assert_eq!(
        rewritten(ops, r#"{"user":{"name":"old","fullName":"Ann"}}"#),
        r#"{"user":{"name":"Ann"}}"#
    );
    assert_eq!(
        rewritten(ops, r#"{"user":{"fullName":"Ann", "name":"old"}}"#),
        r#"{"user":{"name":"Ann"}}"#
    );
    assert_eq!(
        check(ops, r#"{"user":{"name":"kept"}}"#),
        BodyOutcome::Unchanged
    );
}

#[test]
fn adds_and_sets_create_members_and_intermediate_objects() {
    let ops = r#"{"add":{"meta.version":2,"meta.tag":"t"},"set":{"client":"legacy"}}"#;
    assert_eq!(
        rewritten(ops, r#"{}"#),
        r#"{"meta":{"version":2,"tag":"t"},"client":"legacy"}"#
    );
    assert_eq!(
        rewritten(ops, r#"{"client":{"old":true}}"#),
        r#"{"client":"legacy","meta":{"version":2,"tag":"t"}}"#
    );
    assert_eq!(
        rewritten(ops, "{\n  \"meta\": {\"version\": 1}\n}"),
        "{\n  \"meta\": {\"version\": 1,\"tag\":\"t\"},\"client\":\"legacy\"\n}"
    );
    assert_eq!(
        rewritten(ops, r#"{"meta":5}"#),
        r#"{"meta":5,"client":"legacy"}"#,
        "never replaces a non-object"
    );
    assert_eq!(check(ops, r#"[1,2]"#), BodyOutcome::Unchanged);
    assert_eq!(
        rewritten(r#"{"strip":["a"],"add":{"b":1}}"#, r#"{ "a":1 }"#),
        r#"{  "b":1}"#
    );
    assert_eq!(
        rewritten(r#"{"strip":["a"],"add":{"b":1}}"#, r#"{"x":0, "a":1 }"#),
        r#"{"x":0,"b":1 }"#
    );
    assert_eq!(
        rewritten(
            r#"{"set":{"items[*].v":null}}"#,
            r#"{"items":[{},{"v":1},2]}"#
        ),
        r#"{"items":[{"v":null},{"v":null},2]}"#
    );
    assert_eq!(
        rewritten(r#"{"add":{"a.b[0].c":1,"a.d":2}}"#, r#"{}"#),
        r#"{"a":{"d":2}}"#,
        "array steps create nothing"
    );
}

#[test]
fn keys_with_escapes_are_matched_decoded() {
    assert_eq!(
        rewritten(r#"{"strip":["ab"]}"#, r#"{"a\u0062":1,"c":2}"#),
        r#"{"c":2}"#
    );
    assert_eq!(
        rewritten(r#"{"strip":["é"]}"#, r#"{"\u00e9":1,"c":2}"#),
        r#"{"c":2}"#
    );
    assert_eq!(
        rewritten(r#"{"strip":["😀"]}"#, r#"{"\ud83d\ude00":1,"c":2}"#),
        r#"{"c":2}"#
    );
    assert_eq!(
        check(r#"{"strip":["a\"b"]}"#, r#"{"a\\\"b":1}"#),
        BodyOutcome::Unchanged
    );
    assert_eq!(rewritten(r#"{"strip":["a\"b"]}"#, r#"{"a\"b":1}"#), r#"{}"#);
}

// ----- differential tests against the reference -----

const DOCS: &[&str] = &[
    r#"{}"#,
    r#"[]"#,
    r#"null"#,
    r#"  "just a string"  "#,
    r#"-0.5e+10"#,
    r#"{"password":"p","user":{"fullName":"A B","ssn":"123","name":"x"},"meta":{"internal":1,"k":[1,2,{"internal":3}]},"client":"new"}"#,
    r#"{"items":[{"internal_id":1,"x":{"y":2}},{"id":2,"internal_id":[1,{"a":"}"}]},[],"s",{"internal_id":null}],"debug_info":{"trace":"a,b}c"}}"#,
    "{\n\t\"debug_info\" : { } ,\n\t\"user\" :\r\n {\"ssn\":\"\\\"}{\\\\\",\"a\":true}\n,\"z\":false }",
    r#"{"a":1,"a":2,"user":{"ssn":1,"ssn":2},"user":{"fullName":"dup"}}"#,
    r#"{"\u0070assword":"esc","us\u0065r":{"full\u004eame":"x"},"e":"\ud83d\ude00 \u00e9 \n \/ \b\f\r\t"}"#,
    r#"{"n":[0,-0,1.5,-2.25e-3,1E5,3e+2,12345678901234567890],"meta":{},"user":{}}"#,
    r#"{"meta":{"version":1},"items":[]}"#,
    r#"{"meta":"not an object","items":"nope","user":[1,2]}"#,
    r#"[{"id":1,"internal_id":2},{"id":3,"internal_id":4,"password":5}]"#,
    r#"{"deep":{"a":{"b":{"c":{"d":[[[{"e":1}]]]}}}},"user":{"fullName":{"first":"a","last":"b"}}}"#,
    r#"{"名前":"値","emoji":"😀","mixed":"a\u0000b"}"#,
    r#"{"name":"existing","fullName":"top","user":{"name":"shadowed","fullName":"F"}}"#,
];

const OPS: &[&str] = &[
    r#"{"strip":["password","meta.internal"]}"#,
    r#"{"strip":["debug_info","user.ssn","items[*].internal_id"]}"#,
    r#"{"rename":{"user.fullName":"name"},"add":{"meta.version":2},"set":{"client":"legacy"}}"#,
    r#"{"strip":["password"],"rename":{"user.fullName":"name"},"add":{"meta.version":2},"set":{"client":"legacy"}}"#,
    r#"{"strip":["[*].internal_id","[0].password","a"],"set":{"[1].id":"x"}}"#,
    r#"{"strip":["user","user.ssn","meta.k[2].internal"],"add":{"x.y.z":[1,{"a":null}]}}"#,
    r#"{"rename":{"fullName":"name","items[*].internal_id":"iid","meta.k[*].internal":"i"}}"#,
    r#"{"set":{"meta":{"replaced":true},"user.fullName":"set","items[0].x":0,"deep.a.b.c.d":"cut"}}"#,
    r#"{"add":{"user.fullName":"added","user.name":"n","n":[],"e":"new"}}"#,
    r#"{"strip":["名前","emoji","a"],"rename":{"mixed":"m"}}"#,
];

#[test]
fn matches_the_reference_on_every_document() {
    for ops in OPS {
        let (config, compiled) = compile(ops);
        for doc in DOCS {
            check_compiled(&config, &compiled, doc.as_bytes());
        }
    }
}

/// xorshift64*: deterministic pseudo-random numbers for generated cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const KEYS: &[&str] = &["a", "b", "c", "id", "items", "meta", "x", "é", "q\"k"];

fn ws(rng: &mut Rng, out: &mut String) {
    for _ in 0..rng.below(3).saturating_sub(1) {
        out.push([' ', '\n', '\t', '\r'][rng.below(4)]);
    }
}

fn key_text(rng: &mut Rng, key: &str, out: &mut String) {
    out.push('"');
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            c if rng.chance(15) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn gen_value(rng: &mut Rng, depth: usize, out: &mut String) {
    let kind = if depth > 4 {
        rng.below(5)
    } else {
        rng.below(9)
    };
    match kind {
        0 => out.push_str(["null", "true", "false"][rng.below(3)]),
        1 => out.push_str(["0", "-1", "2.5", "1e3", "-0.0E-2", "123456789"][rng.below(6)]),
        2 => out.push_str(
            [
                "\"\"",
                "\"s\"",
                "\"{]},:\\\"\"",
                "\"\\u00e9\\n\"",
                "\"ü😀\"",
            ][rng.below(5)],
        ),
        3 | 4 => out.push_str(["\"v\"", "7"][rng.below(2)]),
        5 | 6 => {
            out.push('[');
            let n = rng.below(4);
            for i in 0..n {
                if i > 0 {
                    ws(rng, out);
                    out.push(',');
                }
                ws(rng, out);
                gen_value(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push(']');
        }
        _ => {
            out.push('{');
            let n = rng.below(5);
            for i in 0..n {
                if i > 0 {
                    ws(rng, out);
                    out.push(',');
                }
                ws(rng, out);
                let key = KEYS[rng.below(KEYS.len())];
                key_text(rng, key, out);
                ws(rng, out);
                out.push(':');
                ws(rng, out);
                gen_value(rng, depth + 1, out);
            }
            ws(rng, out);
            out.push('}');
        }
    }
}

fn gen_path(rng: &mut Rng) -> String {
    let mut p = String::new();
    let len = 1 + rng.below(3);
    if rng.chance(10) {
        p.push_str(["[*]", "[0]", "[1]"][rng.below(3)]);
    }
    for i in 0..len {
        if i > 0 || !p.is_empty() {
            if rng.chance(30) {
                p.push_str(["[*]", "[0]", "[1]"][rng.below(3)]);
            }
            p.push('.');
        }
        p.push_str(KEYS[rng.below(KEYS.len())]);
    }
    p
}

fn gen_ops(rng: &mut Rng) -> Option<(BodyOpsConfig, BodyOps)> {
    let mut config = BodyOpsConfig::default();
    for _ in 0..rng.below(4) {
        config.strip.push(gen_path(rng));
    }
    for _ in 0..rng.below(3) {
        let key = KEYS[rng.below(KEYS.len())].to_string();
        config.rename.0.push((gen_path(rng), key));
    }
    let values = [
        Value::from(1),
        Value::from("s"),
        serde_json::json!({"o": [1, null]}),
        Value::Null,
    ];
    for _ in 0..rng.below(3) {
        config
            .add
            .0
            .push((gen_path(rng), values[rng.below(values.len())].clone()));
    }
    for _ in 0..rng.below(3) {
        config
            .set
            .0
            .push((gen_path(rng), values[rng.below(values.len())].clone()));
    }
    // The configuration is a JSON object: a path appears at most once per operation.
    let unique = |keys: Vec<&String>| {
        keys.iter().collect::<std::collections::HashSet<_>>().len() == keys.len()
    };
    if !unique(config.rename.0.iter().map(|(k, _)| k).collect())
        || !unique(config.add.0.iter().map(|(k, _)| k).collect())
        || !unique(config.set.0.iter().map(|(k, _)| k).collect())
    {
        return None;
    }
    let ops = BodyOps::compile(&config).ok()?;
    Some((config, ops))
}

#[test]
fn matches_the_reference_on_generated_cases() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut compiled = 0;
    while compiled < 1500 {
        let Some((config, ops)) = gen_ops(&mut rng) else {
            continue;
        };
        compiled += 1;
        for _ in 0..8 {
            let mut doc = String::new();
            ws(&mut rng, &mut doc);
            gen_value(&mut rng, 0, &mut doc);
            ws(&mut rng, &mut doc);
            check_compiled(&config, &ops, doc.as_bytes());
        }
    }
}

// ----- invalid documents -----

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

/// Native cost of the benchmark case (a 16 KB response, 5 fields stripped); prints, never asserts
/// on time. `cargo test -p transform --release -- --nocapture bench` for meaningful numbers.
#[test]
fn bench_strip_five_fields_from_16k() {
    let body = crate::bench_fixture::sample_body(16 * 1024);
    let (config, ops) = compile(&crate::bench_fixture::strip_five_ops());
    let outcome = check_compiled(&config, &ops, &body);
    let BodyOutcome::Rewritten(out) = outcome else {
        panic!("expected a rewrite")
    };
    let rounds = 200;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(ops.rewrite(std::hint::black_box(&body)));
    }
    let per = start.elapsed() / rounds;
    println!(
        "strip-5 on {} bytes -> {} bytes: {per:?} per body",
        body.len(),
        out.len()
    );
}
