//! The streaming rewriter against a `serde_json::Value` reference implementation of the same
//! operations, on hand-written, generated and corrupted documents.
//!
//! One module per kind of test; the reference implementation and the helpers that compare the
//! rewriter with it live here, the document and operation generators in `generate`.

use crate::body_ops::BodyOps;
use crate::config::BodyOpsConfig;
use crate::json_path::{JsonPath, Step};
use crate::json_rewrite::{validate, BodyOutcome, MAX_DEPTH};
use serde_json::{Map, Value};

mod differential;
mod exact;
mod generate;
mod invalid;

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
