//! Request and response decisions of [`TenantPolicy`], end to end on plain header maps.
//!
//! One module per concern; the configurations and header maps they share live here.

use crate::policy::{Outcome, RequestFacts, TenantPolicy};
use crate::sources::{KeyRefusal, SourceKind};
use crate::Stage;
use filter_core::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn policy(config: Value) -> TenantPolicy {
    TenantPolicy::new(config.to_string().as_bytes()).unwrap()
}

fn error(config: Value) -> String {
    TenantPolicy::new(config.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

fn request(path: &str, extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::from([
        (":method", "GET"),
        (":path", path),
        (":authority", "gw.example.com"),
        ("x-request-id", "r-1"),
    ]);
    for (n, v) in extra {
        if n.starts_with(':') {
            h.set(n, v);
        } else {
            h.append(n, v);
        }
    }
    h
}

fn response(status: &str, extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::from([(":status", status), ("content-type", "application/json")]);
    for (n, v) in extra {
        h.append(n, v);
    }
    h
}

/// The request stage of the shipped configuration: claim, API key, host, then anonymous.
fn gateway() -> TenantPolicy {
    policy(json!({
        "stage": "request",
        "plan_header": "x-tenant-plan",
        "sources": [
            { "claim": { "header": "x-jwt-tenant", "plan_header": "x-jwt-plan" } },
            { "api_key": { "keys": [
                { "sha256": sha256_hex("key-acme"), "tenant": "acme", "plan": "pro" },
                { "sha256": sha256_hex("key-globex"), "tenant": "globex", "plan": "free" }
            ] } },
            { "host": { "suffix": ".api.example.com" } }
        ],
        "unresolved": { "action": "anonymous" },
        "credential_headers": ["authorization", "x-api-key"]
    }))
}

mod config_errors;
mod privacy;
mod request;
mod response;
