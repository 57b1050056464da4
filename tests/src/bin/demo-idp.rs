//! The demo identity provider for `make demo` and docker-compose, on 127.0.0.1.
//!
//! ```text
//! demo-idp --port N
//! GET  /.well-known/jwks.json                 the public key (RSA, kid demo-1)
//! GET  /token?sub=alice&tenant=acme&scope=orders:read%20orders:write[&org=7][&ttl=600]
//!                                             a bare RS256 token (for TOKEN=$(curl ...))
//! POST /token?...                             the same as an OAuth-style JSON token response
//! GET  /opaque-token?sub=...&tenant=...&scope=...[&ttl=600]
//!                                             an opaque access token (random, held in memory)
//! POST /oauth2/introspect  token=<token>      RFC 7662: {"active": true, "sub", "tenant", "scope",
//!                                             "aud", "iss", "exp", ...} or {"active": false}
//! ```
//!
//! Tokens carry issuer `https://idp.edgegate.localhost`, audience `api`, `sub`, `tenant`,
//! `org.id`, `scope`, `iat`, `exp` (at most an hour) and a `jti`. The key pair is generated at
//! start (`jwt_auth::testing`, openssl) and lives only in memory: restarting the IdP invalidates
//! every token it issued. The first stdout line is `listening 127.0.0.1:NNNN`. Opaque tokens
//! carry the same claims, held here (at most 10,000 live ones) for introspection; the demo's
//! introspection endpoint asks no client credentials of its caller (a real one does: give the
//! gateway's provider `client_id`/`client_secret`, docs/jwt-auth.md).

use anyhow::{Context, Result};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use clap::Parser;
use gateway_tests::demo::{AUDIENCE, ISSUER, MAX_TOKEN_TTL_SECS};
use jwt_auth::testing::{b64, keys, random};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Opaque tokens issued so far: token -> the claims introspection answers with.
type Opaque = Arc<Mutex<HashMap<String, Value>>>;

/// The most live opaque tokens held at once.
const MAX_OPAQUE: usize = 10_000;

const KID: &str = "demo-1";

/// The demo identity provider: a JWKS endpoint and a token-minting endpoint.
#[derive(Debug, Parser)]
struct Args {
    /// TCP port on 127.0.0.1; 0 lets the OS choose (printed on the first stdout line).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[derive(Debug, Deserialize)]
struct TokenParams {
    sub: Option<String>,
    tenant: Option<String>,
    scope: Option<String>,
    org: Option<String>,
    ttl: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let key = &keys().rsa;
    // The signing key stays in memory; the PEM files openssl wrote are not needed any more.
    for pem in [&keys().rsa.pem_path, &keys().rsa2.pem_path] {
        let _ = std::fs::remove_file(pem);
    }
    let jwks = json!({ "keys": [key.jwk(KID)] });
    let opaque: Opaque = Arc::default();
    let issued = opaque.clone();
    let app = axum::Router::new()
        .route(
            "/opaque-token",
            get(move |Query(p): Query<TokenParams>| async move { opaque_token(&issued, &p) }),
        )
        .route(
            "/oauth2/introspect",
            axum::routing::post(move |body: String| async move { introspect(&opaque, &body) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { Json(jwks) }
            }),
        )
        .route(
            "/token",
            get(|Query(p): Query<TokenParams>| async move {
                match mint(&p) {
                    Ok((token, _)) => (
                        [
                            ("content-type", "text/plain"),
                            ("cache-control", "no-store"),
                        ],
                        format!("{token}\n"),
                    )
                        .into_response(),
                    Err(msg) => bad_request(&msg),
                }
            })
            .post(|Query(p): Query<TokenParams>| async move {
                match mint(&p) {
                    Ok((token, ttl)) => (
                        [("cache-control", "no-store")],
                        Json(json!({ "access_token": token, "token_type": "Bearer",
                                     "expires_in": ttl })),
                    )
                        .into_response(),
                    Err(msg) => bad_request(&msg),
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {}", listener.local_addr()?)?;
    out.flush()?;
    axum::serve(listener, app).await.context("serving HTTP")?;
    Ok(())
}

/// Issues an opaque token: 32 random bytes as hex; its claims stay here for introspection.
fn opaque_token(opaque: &Opaque, p: &TokenParams) -> Response {
    let (claims, _) = match claims(p) {
        Ok(c) => c,
        Err(msg) => return bad_request(&msg),
    };
    let token: String = random::<32>().iter().map(|b| format!("{b:02x}")).collect();
    let Ok(mut map) = opaque.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "state poisoned").into_response();
    };
    // Bounded: expired tokens go first; past MAX_OPAQUE live ones, none is issued.
    let now = claims["iat"].as_u64().unwrap_or(0);
    map.retain(|_, c| c["exp"].as_u64().is_some_and(|exp| now < exp));
    if map.len() >= MAX_OPAQUE {
        let msg = "too many live opaque tokens";
        return (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    }
    map.insert(token.clone(), claims);
    let headers = [
        ("content-type", "text/plain"),
        ("cache-control", "no-store"),
    ];
    (headers, format!("{token}\n")).into_response()
}

/// RFC 7662: the token's claims with `active: true` while it has not expired, else
/// `{"active": false}` (unknown tokens too).
fn introspect(opaque: &Opaque, form: &str) -> Response {
    let token = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or("");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let found = opaque.lock().ok().and_then(|m| m.get(token).cloned());
    let answer = match found {
        Some(mut c) if c["exp"].as_u64().is_some_and(|exp| now < exp) => {
            c["active"] = json!(true);
            c["client_id"] = json!("demo-cli");
            c["token_type"] = json!("Bearer");
            c
        }
        _ => json!({ "active": false }),
    };
    ([("cache-control", "no-store")], Json(answer)).into_response()
}

fn bad_request(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "invalid_request", "message": msg })),
    )
        .into_response()
}

/// Letters, digits and `._-`, 1 to 64 of them: safe in a header the gateway sets from it.
fn word(what: &str, value: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} must be 1-64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// A signed token and its lifetime in seconds.
fn mint(p: &TokenParams) -> Result<(String, u64), String> {
    let (claims, ttl) = claims(p)?;
    let header = json!({ "alg": "RS256", "kid": KID, "typ": "JWT" });
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = keys().rsa.rs256(input.as_bytes());
    Ok((format!("{input}.{}", b64(signature)), ttl))
}

/// The claims of a token for `p` (checked), and its lifetime in seconds.
fn claims(p: &TokenParams) -> Result<(Value, u64), String> {
    let sub = p.sub.as_deref().unwrap_or("alice");
    let tenant = p.tenant.as_deref().unwrap_or("acme");
    let org = p.org.as_deref().unwrap_or("1");
    let scope = p.scope.as_deref().unwrap_or("orders:read");
    word("sub", sub)?;
    word("tenant", tenant)?;
    word("org", org)?;
    for s in scope.split(' ') {
        let ok = (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || ":._-".contains(c));
        if !ok {
            return Err("scope must be space-separated words of letters, digits and ':._-'".into());
        }
    }
    let ttl = p.ttl.unwrap_or(MAX_TOKEN_TTL_SECS);
    if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(format!("ttl must be 1..={MAX_TOKEN_TTL_SECS} seconds"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "tenant": tenant, "org": { "id": org },
        "scope": scope, "iat": now, "exp": now + ttl, "jti": b64(random::<12>()),
    });
    Ok((claims, ttl))
}
