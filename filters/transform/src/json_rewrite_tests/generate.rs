//! Deterministic generators of documents and operations for the differential and corruption
//! tests.

use crate::body_ops::BodyOps;
use crate::config::BodyOpsConfig;
use serde_json::Value;

/// xorshift64*: deterministic pseudo-random numbers for generated cases.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const KEYS: &[&str] = &["a", "b", "c", "id", "items", "meta", "x", "é", "q\"k"];

pub(super) fn ws(rng: &mut Rng, out: &mut String) {
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

pub(super) fn gen_value(rng: &mut Rng, depth: usize, out: &mut String) {
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

pub(super) fn gen_ops(rng: &mut Rng) -> Option<(BodyOpsConfig, BodyOps)> {
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
