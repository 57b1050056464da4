//! Differential tests against the reference, on hand-written and generated cases, and the
//! native cost of the benchmark case.

use super::generate::{gen_ops, gen_value, ws, Rng};
use super::*;

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
