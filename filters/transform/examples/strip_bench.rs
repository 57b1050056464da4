//! Native micro-benchmark of the JSON rewriter on the benchmark case (16 KB, five strips).
//! `cargo run --release -p transform --example strip_bench`

use std::time::Instant;
use transform::bench_fixture::{sample_body, strip_five_ops};
use transform::json_rewrite::{validate, BodyOutcome};
use transform::Transformer;

fn main() {
    let config = format!(
        r#"{{"default":{{"response":{{"body":{}}}}}}}"#,
        strip_five_ops()
    );
    let transformer = match Transformer::new(config.as_bytes()) {
        Ok(t) => t,
        Err(e) => return eprintln!("{e}"),
    };
    let Some(ops) = transformer.response_body_ops(transform::RuleRef::Default) else {
        return;
    };
    let body = sample_body(16 * 1024);
    let out_len = match transformer.rewrite_json(ops, &body) {
        BodyOutcome::Rewritten(out) => out.len(),
        other => return eprintln!("unexpected outcome {other:?}"),
    };
    let rounds = 20_000u32;
    let time = |f: &dyn Fn()| {
        for _ in 0..rounds / 10 {
            f();
        }
        let start = Instant::now();
        for _ in 0..rounds {
            f();
        }
        start.elapsed() / rounds
    };
    let rewrite = time(&|| {
        std::hint::black_box(transformer.rewrite_json(ops, std::hint::black_box(&body)));
    });
    if std::env::args().any(|a| a == "--rewrite-only") {
        return println!("streaming strip-5: {rewrite:.2?}");
    }
    let validate_only = time(&|| {
        let _ = std::hint::black_box(validate(std::hint::black_box(&body)));
    });
    let serde_value = time(&|| {
        let v: Result<serde_json::Value, _> = serde_json::from_slice(std::hint::black_box(&body));
        std::hint::black_box(v.map(|v| serde_json::to_vec(&v)).ok());
    });
    let serde_ignored = time(&|| {
        let v: Result<serde::de::IgnoredAny, _> =
            serde_json::from_slice(std::hint::black_box(&body));
        let _ = std::hint::black_box(v);
    });
    let mb_s = |d: std::time::Duration| body.len() as f64 / d.as_secs_f64() / 1e6;
    println!("body {} bytes -> {out_len} bytes", body.len());
    println!(
        "streaming strip-5:       {rewrite:>10.2?}  ({:.0} MB/s)",
        mb_s(rewrite)
    );
    println!(
        "validate only:           {validate_only:>10.2?}  ({:.0} MB/s)",
        mb_s(validate_only)
    );
    println!(
        "serde IgnoredAny (validate): {serde_ignored:>10.2?}  ({:.0} MB/s)",
        mb_s(serde_ignored)
    );
    println!(
        "serde Value parse+write: {serde_value:>10.2?}  ({:.0} MB/s)",
        mb_s(serde_value)
    );
}
