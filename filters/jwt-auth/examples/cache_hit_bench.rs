//! The verified-token cache path, native: one request with a cached token through the whole
//! engine (rule match, extraction, cache lookup with full comparison, upstream edits), the
//! work jwt_auth.wasm does per request besides host calls. `--features test-support`.
//!
//! cargo run --release -p jwt-auth --features test-support --example cache_hit_bench

use filter_core::HeaderMap;
use jwt_auth::config::FilterConfig;
use jwt_auth::engine::{host_edits, Authenticator, KeyStore, NoRevocation, Outcome};
use jwt_auth::jwks_cache::KeyRequest;
use jwt_auth::rules::{Governing, ProviderId};
use jwt_auth::testing::{jwks, token};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

struct NoRemote;
impl KeyStore for NoRemote {
    fn keys(&self, _: ProviderId, _: u64) -> Option<Arc<jwt_auth::jwks::KeySet>> {
        None
    }
    fn request_keys(&mut self, _: ProviderId, _: u64) -> KeyRequest {
        KeyRequest::Refused
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = 1_700_000_000;
    let cfg = json!({
        "providers": {"idp": {"issuer": "https://idp", "audiences": ["api"],
            "local_jwks": {"inline": jwks(false)},
            "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}]}},
        "rules": [{"requires": {"provider_name": "idp"}}],
    });
    let config = Arc::new(FilterConfig::parse(cfg.to_string().as_bytes())?);
    let mut auth = Authenticator::new(config, 7);
    let t = token("RS256", now);
    let bearer = format!("Bearer {t}");
    let pairs = [
        (":method", "GET"),
        (":path", "/small"),
        (":authority", "127.0.0.1:10000"),
        (":scheme", "http"),
        ("user-agent", "wrk"),
        ("authorization", bearer.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "0b7c7b64-3c1c-4a5e-9f0e-3f2f5d1a9b77"),
    ];
    let n = 200_000;
    let start = Instant::now();
    let mut calls = 0;
    for _ in 0..n {
        // The glue builds the map from the host's pairs on every request.
        let headers = HeaderMap::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let d = auth.authenticate(
            &headers,
            Governing::Matchers,
            now * 1000,
            &mut NoRemote,
            &NoRevocation,
        );
        if d.outcome != Outcome::Allow {
            return Err("the token was refused".into());
        }
        calls += host_edits(&d.edits, &headers).len();
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "cache-hit path: {per:.2} us per request natively, {} header host calls per request",
        calls / n as usize
    );
    Ok(())
}
