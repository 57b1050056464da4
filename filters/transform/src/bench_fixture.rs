//! The benchmark case shared by the native micro-benchmark, the rewriter's tests and the
//! gateway benchmark (tests/src/bin/gateway-bench.rs): a typical API response of about 16 KB
//! with five fields to strip (three top-level or nested, two in every list item).

/// The five strips of the benchmark: the `strip` list of a response `body` section.
pub const STRIP_FIVE: [&str; 5] = [
    "debug_info",
    "user.ssn",
    "trace_id",
    "items[*].internal_id",
    "items[*].audit",
];

/// The benchmark's `body` section: `{"strip": STRIP_FIVE}`.
pub fn strip_five_ops() -> String {
    serde_json::json!({ "strip": STRIP_FIVE }).to_string()
}

/// A pretty-printed JSON document of at least `min_len` bytes shaped like an API list response.
pub fn sample_body(min_len: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut doc = String::new();
    for i in 0.. {
        items.push(format!(
            r#"    {{
      "id": {i},
      "internal_id": "int-{i:08}",
      "name": "Product number {i} with a \"quoted\" name",
      "price": {}.{:02},
      "tags": ["sale", "new", "ünïcödé"],
      "audit": {{"created_by": "svc-{i}", "at": "2024-01-01T00:00:00Z"}},
      "available": {}
    }}"#,
            i * 3 + 1,
            i % 100,
            i % 2 == 0
        ));
        doc = format!(
            "{{\n  \"trace_id\": \"0af7651916cd43dd8448eb211c80319c\",\n  \"user\": {{\"id\": 7, \"name\": \"Ann\", \"ssn\": \"078-05-1120\"}},\n  \"items\": [\n{}\n  ],\n  \"debug_info\": {{\"host\": \"app-3\", \"took_ms\": 12.5, \"cache\": [true, false]}},\n  \"page\": {{\"next\": null, \"size\": {}}}\n}}\n",
            items.join(",\n"),
            i + 1
        );
        if doc.len() >= min_len {
            break;
        }
    }
    doc.into_bytes()
}
