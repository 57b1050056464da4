//! jwt_auth: cached and distinct tokens, RS256 against native jwt_authn.

use super::*;

/// jwt_auth.wasm against Envoy's native jwt_authn, same keys, tokens and cache size.
pub(super) async fn jwt_section(load: &Load) -> Result<String> {
    use jwt_auth::testing::{jwks, token};
    eprintln!("jwt: generating keys and 2,000 RS256 tokens");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let jwks_text = jwks(false).to_string();
    let rs = token("RS256", now);
    let es = token("ES256", now);
    let dir = tempfile::tempdir()?;
    let tokens_file = dir.path().join("tokens.txt");
    std::fs::write(
        &tokens_file,
        rs256_tokens(now, 2000, |i, c| c["jti"] = json!(format!("bench-{i}"))),
    )?;
    let script = dir.path().join("rotate.lua");
    std::fs::write(&script, token_rotation_script("/small", &tokens_file))?;

    // Both caches hold 1,000 entries: a cycle over 2,000 tokens misses every time in an LRU,
    // so row (c) prices signature verification; rows (a) and (b) price the cache path.
    const CACHE: u32 = 1000;
    let native = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "idp": {
                "issuer": "https://idp",
                "audiences": ["api"],
                "local_jwks": { "inline_string": jwks_text },
                "claim_to_headers": [{ "header_name": "x-user-id", "claim_name": "sub" }],
                "jwt_cache_config": { "jwt_cache_size": CACHE },
            }},
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" } }],
        },
    });
    let ours = chain::wasm(
        "jwt_auth",
        &json!({
            "providers": { "idp": {
                "issuer": "https://idp",
                "audiences": ["api"],
                "local_jwks": { "inline": jwks_text },
                "claim_to_headers": [{ "header_name": "x-user-id", "claim_name": "sub" }],
            }},
            "rules": [{ "requires": { "provider_name": "idp" } }],
            "token_cache": { "max_entries": CACHE },
        }),
    )?;
    let floor = chain::wasm("passthrough", &json!({}))?;
    let rs_auth = format!("Bearer {rs}");
    let es_auth = format!("Bearer {es}");
    let rs_h = [("authorization", rs_auth.as_str())];
    let es_h = [("authorization", es_auth.as_str())];
    eprintln!(
        "jwt: {} connections, {}s per row, one Envoy worker",
        load.connections,
        load.duration.as_secs()
    );
    let mut t =
        Table::new("JWT verification through one Envoy worker (wrk -t1 -c16, direct_response)");
    let rows: Vec<(&str, &str, Vec<Value>, Drive)> = vec![
        ("none", "no filter", vec![], Drive::Header(&rs_h)),
        (
            "f",
            "pass-through wasm filter (the floor)",
            vec![floor],
            Drive::Header(&rs_h),
        ),
        (
            "na",
            "native jwt_authn: one RS256 token repeated",
            vec![native.clone()],
            Drive::Header(&rs_h),
        ),
        (
            "nb",
            "native jwt_authn: one ES256 token repeated",
            vec![native.clone()],
            Drive::Header(&es_h),
        ),
        (
            "nc",
            "native jwt_authn: 2,000 distinct RS256 tokens",
            vec![native],
            Drive::Script(&script),
        ),
        (
            "wa",
            "jwt_auth.wasm: one RS256 token repeated",
            vec![ours.clone()],
            Drive::Header(&rs_h),
        ),
        (
            "wb",
            "jwt_auth.wasm: one ES256 token repeated",
            vec![ours.clone()],
            Drive::Header(&es_h),
        ),
        (
            "wc",
            "jwt_auth.wasm: 2,000 distinct RS256 tokens",
            vec![ours],
            Drive::Script(&script),
        ),
    ];
    for (key, label, filters, drive) in rows {
        t.add(
            key,
            label,
            measure_driven(key, filters, "/small", drive, load).await?,
        );
    }
    Ok(t.render(&[
        ("wa", "f", Some(0.9)),
        ("wb", "f", None),
        ("wc", "nc", Some(0.5)),
        ("wa", "na", None),
        ("na", "none", None),
        ("nc", "none", None),
    ]))
}
