//! The bundle's own per-request work, without Envoy: requests through `BundlePlugin` over
//! filter-core's recording `FakeHost`, with the gateway benchmark's stages (cached ES256 tokens,
//! the tenant from a claim, transform's header edits and a 2-field strip of a JSON body).
//! Natively, or inside V8 with a profile of the module's own functions
//! (`scripts/glue-vm-profile.sh`), which `perf` on Envoy cannot name.
//!
//! `glue_bench emit`: prints the JWKS and tokens, one per line (made natively: the VM has no
//! key generation). `glue_bench run JWKS TOKEN... [-n iterations]`: times the requests.

use bundle::BundlePlugin;
use filter_core::host::{Buffer, Map};
use filter_core::testing::FakeHost;
use filter_core::{HeaderMap, HttpFilter, Plugin};
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Instant;

const NOW: u64 = 1_700_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("emit") => emit(),
        Some("run") => run(&args[1..]),
        _ => Err("usage: glue_bench emit | glue_bench run JWKS TOKEN... [-n N]".into()),
    }
}

fn emit() -> Result<(), Box<dyn std::error::Error>> {
    use jwt_auth::testing::{claims, jwks, sign};
    println!("{}", jwks(false));
    for i in 0..20 {
        let mut c = claims(NOW);
        c["sub"] = json!(format!("user-{i}"));
        c["tenant"] = json!(format!("tenant-{}", i % 10));
        c["exp"] = json!(NOW + 3000);
        println!("{}", sign(&json!({ "alg": "ES256", "kid": "ec-1" }), &c));
    }
    Ok(())
}

/// The gateway benchmark's bundle (tests/src/stages.rs), with inline keys.
fn config(jwks: &str) -> Value {
    json!({
        "jwt_auth": {
            "providers": { "idp": {
                "issuer": "https://idp", "audiences": ["api"], "require_expiration": true,
                "max_lifetime": "3600s", "local_jwks": { "inline": jwks },
                "from_headers": [{ "name": "authorization", "value_prefix": "Bearer " }],
                "claim_to_headers": [{ "header_name": "x-org-id", "claim_name": "org.id" }],
                "tenant_claim": "tenant", "tenant_header": "x-jwt-tenant",
            }},
            "rules": [
                { "match": { "path_prefix": "/api/v0" } },
                { "match": { "path_regex": "/api/(v[0-9]+/)?orders(/.*)?" }, "requires": { "provider_name": "idp" } },
                { "match": { "path_prefix": "/" }, "requires": { "provider_name": "idp" } }
            ],
        },
        "tenant_cache_key": {
            "stage": "request", "tenant_header": "x-tenant-id",
            "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
            "unresolved": { "action": "anonymous" },
        },
        "transform": {
            "rules": [{
                "name": "users", "match": { "path_prefix": "/api/users" },
                "request": { "headers": { "set": { "x-gateway-route": "users" }, "remove": ["accept-encoding"] } },
                "response": {
                    "headers": { "remove": ["server", "x-powered-by"], "set": { "x-gateway": "edgegate" } },
                    "body": { "strip": ["password_hash", "internal"] }
                }
            }],
        },
    })
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let (n, rest) = match args.iter().position(|a| a == "-n") {
        Some(i) => (args.get(i + 1).and_then(|s| s.parse().ok()), &args[..i]),
        None => (None, args),
    };
    let n: u32 = n.unwrap_or(20_000);
    let [jwks, tokens @ ..] = rest else {
        return Err("run needs JWKS and tokens".into());
    };
    if tokens.is_empty() {
        return Err("run needs tokens".into());
    }
    let host = FakeHost::at(NOW * 1000);
    let plugin = BundlePlugin::configure(host.clone(), config(jwks).to_string().as_bytes())?;
    let plugin = Rc::new(plugin);
    let body = json!({ "id": 42, "name": "Ada", "password_hash": "x", "internal": { "a": 1 },
                       "email": "ada@example.com" })
    .to_string();
    let auths: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();
    let one = |i: u32| -> Result<(), Box<dyn std::error::Error>> {
        let ctx = 2;
        host.enter(ctx);
        host.set_map(
            Map::RequestHeaders,
            HeaderMap::from([
                (":method", "GET"),
                (":path", "/api/users/42"),
                (":authority", "api.example"),
                (":scheme", "http"),
                ("user-agent", "wrk"),
                ("accept", "*/*"),
                ("x-request-id", "0b5d1c9e-3f0a-4d1e-9a57-3c7e2f1b8a64"),
                ("authorization", auths[i as usize % auths.len()].as_str()),
            ]),
        );
        let mut request = plugin.http_context(ctx);
        let on_headers = request.on_request_headers(true);
        host.set_map(
            Map::ResponseHeaders,
            HeaderMap::from([
                (":status", "200"),
                ("content-type", "application/json"),
                ("server", "upstream"),
            ]),
        );
        let _ = request.on_response_headers(false);
        host.set_buffer_of(Buffer::ResponseBody, body.as_bytes());
        let _ = request.on_response_body(body.len(), true);
        request.on_done();
        if on_headers != filter_core::Action::Continue {
            return Err(format!("request {i} was not admitted: {on_headers:?}").into());
        }
        Ok(())
    };
    for i in 0..tokens.len() as u32 * 2 {
        one(i)?;
    }
    if host
        .buffer_of(2, Buffer::ResponseBody)
        .windows(8)
        .any(|w| w == b"internal")
    {
        return Err("the body was not stripped".into());
    }
    let start = Instant::now();
    for i in 0..n {
        one(i)?;
        if i % 1024 == 0 {
            host.take_calls();
            plugin.flush();
        }
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("bundle glue: {us:.2} us per request over {n} (FakeHost)");
    Ok(())
}
