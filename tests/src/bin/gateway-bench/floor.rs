//! The floor: a pass-through wasm filter and single host calls priced.

use super::*;

/// Prices the floor: the VM entry/exit cost per request, and single host calls on top of it.
pub(super) async fn floor_section(load: &Load) -> Result<String> {
    eprintln!("floor: pricing proxy-wasm callbacks and host calls");
    let mut t =
        Table::new("What the wasm floor is made of (one Envoy worker, 10 calls per request)");
    let probe = |cfg: Value| chain::wasm("passthrough", &cfg);
    t.add(
        "a",
        "no filter",
        measure("a", vec![], "/small", load).await?,
    );
    t.add(
        "f",
        "pass-through wasm filter",
        measure("f", vec![probe(json!({}))?], "/small", load).await?,
    );
    t.add(
        "f2",
        "two pass-through wasm filters",
        measure(
            "f2",
            vec![
                probe(json!({}))?,
                chain::wasm_at(
                    "passthrough2",
                    &gateway_tests::tools::wasm("passthrough")?
                        .display()
                        .to_string(),
                    "{}",
                ),
            ],
            "/small",
            load,
        )
        .await?,
    );
    let rows = [
        (
            "map",
            "read_header_map",
            "10 x get_http_request_headers (whole map)",
        ),
        (
            "get",
            "get_header",
            "10 x get_http_request_header(\":path\")",
        ),
        ("set", "set_header", "10 x set_http_request_header"),
        ("prop", "get_property", "10 x get_property(request.path)"),
    ];
    for (key, field, label) in rows {
        t.add(
            key,
            label,
            measure(key, vec![probe(json!({ field: 10 }))?], "/small", load).await?,
        );
    }
    let mut out = t.render(&[("f", "a", None), ("f2", "a", None)]);
    let per_req = |k: &str| t.get(k).map(|f| 1e6 / f.rps);
    if let (Some(a), Some(f), Some(f2)) = (per_req("a"), per_req("f"), per_req("f2")) {
        out.push_str(&format!(
            "\nWorker time per request: no filter {a:.1} us; one pass-through filter adds {:.1} us; a second adds {:.1} us.\n",
            f - a,
            f2 - f
        ));
    }
    for (key, _, label) in rows {
        if let (Some(f), Some(p)) = (per_req("f"), per_req(key)) {
            out.push_str(&format!("- {label}: {:.2} us per call\n", (p - f) / 10.0));
        }
    }
    Ok(out)
}
