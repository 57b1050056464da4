//! Cross-module tests: every algorithm against independently signed tokens, the attack corpus
//! through the whole engine, configuration errors, and the shared JWKS cache with injected time.
//!
//! One module per concern; the helpers and test doubles they share live here.

use crate::config::FilterConfig;
use crate::engine::{Authenticator, Decision, HeaderEdit, NoRevocation, Outcome};
use crate::jwks::{JwksOrigin, KeySet};
use crate::keystore::{Fetcher, SharedStore, WorkerKeys};
use crate::outcome::Denial;
use crate::rules::{Governing, ProviderId};
use crate::testing::*;
use crate::token::parse;
use crate::verify::{verify, VerifyError};
use filter_core::HeaderMap;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

const NOW: u64 = 1_700_000_000;
const ALGS: [&str; 13] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];

fn claims() -> Value {
    crate::testing::claims(NOW)
}

fn token(alg: &str) -> String {
    crate::testing::token(alg, NOW)
}

fn local_set() -> KeySet {
    KeySet::from_value(&jwks(true), JwksOrigin::Local).unwrap()
}

fn verify_token(set: &KeySet, t: &str) -> Result<(), VerifyError> {
    let jwt = parse(t, 8192).unwrap();
    verify(
        set,
        &jwt.header,
        jwt.signing_input.as_bytes(),
        &jwt.signature,
    )
}

// ---------------------------------------------------------------------------------------------
// The engine with a local JWKS.

fn config_json(extra_provider: Value, rules: Value) -> String {
    let mut provider = json!({
        "issuer": "https://idp",
        "audiences": ["api"],
        "local_jwks": {"inline": jwks(true).to_string()},
        "claim_to_headers": [{"header_name": "x-org-id", "claim_name": "org.id"}],
        "tenant_claim": "tenant",
        "forward_payload_header": "x-jwt-payload"
    });
    for (k, v) in extra_provider.as_object().unwrap() {
        provider[k] = v.clone();
    }
    json!({"providers": {"idp": provider}, "rules": rules, "realm": "api"}).to_string()
}

fn default_rules() -> Value {
    json!([
        {"match": {"path_prefix": "/public"}},
        {"match": {"path_prefix": "/orders", "methods": ["POST"]}, "requires": {"provider_name": "idp"},
         "required_scopes": ["orders:write"]},
        {"match": {"path_prefix": "/admin"}, "requires": {"provider_name": "idp"},
         "required_claims": [{"name": "groups", "contains": "admins"}]},
        {"match": {"path_prefix": "/optional"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "idp"}, {"allow_missing": {}}]}}},
        {"match": {"path_prefix": "/"}, "requires": {"provider_name": "idp"}}
    ])
}

fn engine(extra_provider: Value) -> Authenticator {
    let cfg = FilterConfig::parse(config_json(extra_provider, default_rules()).as_bytes()).unwrap();
    Authenticator::new(Arc::new(cfg), 1)
}

fn request(method: &str, path: &str, auth: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::from([
        (":method", method),
        (":path", path),
        (":authority", "api.example"),
    ]);
    if let Some(t) = auth {
        h.append("authorization", &format!("Bearer {t}"));
    }
    h
}

fn run(e: &mut Authenticator, h: &HeaderMap) -> Decision {
    e.authenticate(
        h,
        Governing::Matchers,
        NOW * 1000,
        &mut NoRemote,
        &NoRevocation,
    )
}

fn denial(d: &Decision) -> Denial {
    match &d.outcome {
        Outcome::Deny(d) => *d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn sets(d: &Decision) -> HashMap<String, String> {
    d.edits
        .iter()
        .filter_map(|e| match e {
            HeaderEdit::Set(n, v) => Some((n.clone(), v.clone())),
            HeaderEdit::Remove(_) | HeaderEdit::Add(..) => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Test doubles for the remote JWKS: shared data in memory, and a recording fetcher.

#[derive(Default)]
struct MemShared(RefCell<HashMap<String, (Vec<u8>, u32)>>);
impl SharedStore for MemShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.0.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut map = self.0.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        map.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        true
    }
}

#[derive(Default)]
struct Fetches(Vec<ProviderId>);
impl Fetcher for Fetches {
    fn fetch(&mut self, p: ProviderId, _: &crate::config::RemoteJwks) -> bool {
        self.0.push(p);
        true
    }
}

mod config_errors;
mod decisions;
mod glue;
mod hardening;
mod introspection;
mod native;
mod remote_jwks;
mod routes;
mod signatures;
