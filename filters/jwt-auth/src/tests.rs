//! Cross-module tests: every algorithm against independently signed tokens, the attack corpus
//! through the whole engine, configuration errors, and the shared JWKS cache with injected time.

use crate::config::FilterConfig;
use crate::engine::{Authenticator, Decision, HeaderEdit, NoRevocation, Outcome};
use crate::jwks::{JwksOrigin, KeySet};
use crate::keystore::{Fetcher, SharedStore, WorkerKeys};
use crate::outcome::Denial;
use crate::rules::ProviderId;
use crate::testing::*;
use crate::token::parse;
use crate::verify::{verify, VerifyError};
use filter_core::HeaderMap;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

const NOW: u64 = 1_700_000_000;
const ALGS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
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

#[test]
fn every_algorithm_verifies_independently_signed_tokens() {
    let set = local_set();
    for alg in ALGS {
        let t = token(alg);
        assert_eq!(verify_token(&set, &t), Ok(()), "{alg}");
        // Tampered payload and tampered signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let tampered = format!("{}.{}.{}", parts[0], b64(evil.to_string()), parts[2]);
        assert_eq!(
            verify_token(&set, &tampered),
            Err(VerifyError::BadSignature),
            "{alg}"
        );
        let mut sig = crate::token::parse(&t, 8192).unwrap().signature;
        sig[0] ^= 1;
        parts[2] = b64(&sig);
        assert_eq!(
            verify_token(&set, &parts.join(".")),
            Err(VerifyError::BadSignature),
            "{alg}"
        );
        sig.pop();
        parts[2] = b64(&sig);
        assert_eq!(
            verify_token(&set, &parts.join(".")),
            Err(VerifyError::BadSignature),
            "{alg} short"
        );
    }
}

#[test]
fn tokens_signed_by_jwt_compact_verify() {
    use jwt_compact::alg::{Ed25519, Es256, Rsa};
    use jwt_compact::{AlgorithmExt, Claims, Header};
    let set = local_set();
    let k = keys();
    let c = Claims::new(json!({"sub": "x"}));
    let rs = Rsa::rs256()
        .token(&Header::empty().with_key_id("rsa-1"), &c, &k.rsa.private)
        .unwrap();
    assert_eq!(verify_token(&set, &rs), Ok(()));
    let ps = Rsa::ps256()
        .token(&Header::empty().with_key_id("rsa-1"), &c, &k.rsa.private)
        .unwrap();
    assert_eq!(verify_token(&set, &ps), Ok(()));
    let es = Es256
        .token(&Header::empty().with_key_id("ec-1"), &c, &k.p256)
        .unwrap();
    assert_eq!(verify_token(&set, &es), Ok(()));
    let ed = Ed25519
        .token(&Header::empty().with_key_id("ed-1"), &c, &k.ed.sk)
        .unwrap();
    assert_eq!(verify_token(&set, &ed), Ok(()));
    // A token from the other RSA key under the same kid fails.
    let set2 =
        KeySet::from_value(&json!({"keys": [k.rsa2.jwk("rsa-1")]}), JwksOrigin::Remote).unwrap();
    assert_eq!(verify_token(&set2, &rs), Err(VerifyError::BadSignature));
}

#[test]
fn in_process_rs256_signing_matches_openssl() {
    let k = keys();
    let input = b"header.payload";
    assert_eq!(
        k.rsa.rs256(input),
        k.rsa.openssl_sign("sha256", false, input)
    );
}

#[test]
fn alg_confusion_is_impossible() {
    let k = keys();
    let set = local_set();
    let body = b64(claims().to_string());
    // HS256 "signed" with the RSA public key as the HMAC secret, in PEM and JWK forms, under
    // the RSA key's kid, another kid and no kid.
    let secrets = [
        k.rsa.public_pem.clone().into_bytes(),
        k.rsa.jwk("rsa-1").to_string().into_bytes(),
    ];
    for secret in &secrets {
        for kid in [Some("rsa-1"), None] {
            let mut h = json!({"alg": "HS256"});
            if let Some(kid) = kid {
                h["kid"] = json!(kid);
            }
            let input = format!("{}.{body}", b64(h.to_string()));
            let t = format!("{input}.{}", b64(hmac("HS256", secret, input.as_bytes())));
            assert!(verify_token(&set, &t).is_err(), "{kid:?}");
        }
    }
    // A remote JWKS can never carry an HMAC secret, so a remote-only provider has no HS key.
    let remote = KeySet::from_value(&jwks(true), JwksOrigin::Remote).unwrap();
    assert!(remote.skipped.iter().any(|s| s.contains("symmetric")));
    let hs = token("HS256");
    assert_eq!(verify_token(&remote, &hs), Err(VerifyError::UnknownKid));
    // ES256 token presented with an RSA kid, RS256 with an EC kid.
    let t = sign(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims());
    assert_eq!(verify_token(&set, &t), Err(VerifyError::NoMatchingKey));
    let t = sign(&json!({"alg": "RS256", "kid": "ec-1"}), &claims());
    assert_eq!(verify_token(&set, &t), Err(VerifyError::NoMatchingKey));
}

#[test]
fn jwk_alg_and_use_pin_keys() {
    let k = keys();
    let mut pinned = k.rsa.jwk("rsa-1");
    pinned["alg"] = json!("PS256");
    let set = KeySet::from_value(&json!({"keys": [pinned]}), JwksOrigin::Remote).unwrap();
    assert_eq!(
        verify_token(&set, &token("RS256")),
        Err(VerifyError::NoMatchingKey)
    );
    assert_eq!(verify_token(&set, &token("PS256")), Ok(()));
    let mut enc = k.rsa.jwk("rsa-1");
    enc["use"] = json!("enc");
    let mut ok = k.rsa2.jwk("other");
    ok["use"] = json!("sig");
    let set = KeySet::from_value(&json!({"keys": [enc, ok]}), JwksOrigin::Remote).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(
        verify_token(&set, &token("RS256")),
        Err(VerifyError::UnknownKid)
    );
    // No kid: every fitting key is tried.
    let set = KeySet::from_value(
        &json!({"keys": [k.rsa2.jwk("x"), k.rsa.jwk("y")]}),
        JwksOrigin::Remote,
    )
    .unwrap();
    let t = sign(&json!({"alg": "RS256"}), &claims());
    assert_eq!(verify_token(&set, &t), Ok(()));
}

#[test]
fn jwks_parsing_skips_bad_keys_and_refuses_empty_sets() {
    let k = keys();
    let small = json!({"kty": "RSA", "kid": "small", "n": b64([0xc5u8; 128]), "e": "AQAB"});
    let bad_e = json!({"kty": "RSA", "kid": "e", "n": k.rsa.jwk("x")["n"], "e": "Ag"});
    let doc = json!({"keys": [small, bad_e, {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "x": "AA"}, {"kty": "foo"}, 5, p256_jwk("good")]});
    let set = KeySet::from_value(&doc, JwksOrigin::Remote).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.skipped.len(), 6, "{:?}", set.skipped);
    let mut off_curve = p256_jwk("bad");
    off_curve["y"] = off_curve["x"].clone();
    assert!(KeySet::from_value(&json!({"keys": [off_curve]}), JwksOrigin::Remote).is_err());
    assert!(KeySet::parse(b"<html>", JwksOrigin::Remote).is_err());
    assert!(KeySet::parse(br#"{"keys": []}"#, JwksOrigin::Remote).is_err());
    assert!(KeySet::parse(br#"{"keys": {}}"#, JwksOrigin::Remote).is_err());
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
    e.authenticate(h, NOW * 1000, &mut NoRemote, &NoRevocation)
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

#[test]
fn valid_token_sets_upstream_headers_and_strips_the_token() {
    let mut e = engine(json!({}));
    let t = token("ES256");
    let mut h = request("GET", "/things", Some(&t));
    h.append("x-user-id", "spoofed");
    let d = run(&mut e, &h);
    assert_eq!(d.outcome, Outcome::Allow);
    for owned in [
        "x-user-id",
        "x-tenant-id",
        "x-org-id",
        "x-jwt-payload",
        "authorization",
    ] {
        assert!(
            d.edits.contains(&HeaderEdit::Remove(owned.into())),
            "{owned}"
        );
    }
    let s = sets(&d);
    assert_eq!(s["x-user-id"], "user-1");
    assert_eq!(s["x-tenant-id"], "acme");
    assert_eq!(s["x-org-id"], "7");
    assert_eq!(s["x-jwt-payload"], t.split('.').nth(1).unwrap());
    assert_eq!((d.cache_hits, d.cache_misses), (0, 1));
    let again = run(&mut e, &h);
    assert_eq!((again.outcome, again.cache_hits), (Outcome::Allow, 1));
    // forward: true keeps the token.
    let mut fwd = engine(json!({"forward": true}));
    let d = run(&mut fwd, &h);
    assert!(!d
        .edits
        .contains(&HeaderEdit::Remove("authorization".into())));
}

#[test]
fn host_edits_skip_no_op_removals() {
    let mut e = engine(json!({}));
    let t = token("ES256");
    let mut h = request("GET", "/things", Some(&t));
    h.append("x-user-id", "spoofed");
    h.append("x-jwt-payload", "spoofed");
    let d = run(&mut e, &h);
    let calls = crate::engine::host_edits(&d.edits, &h);
    // The token's header goes. The spoofed owned headers are replaced by the sets (a set
    // replaces every value), so they need no removal; absent ones need none either.
    assert!(calls.contains(&&HeaderEdit::Remove("authorization".into())));
    assert!(!calls
        .iter()
        .any(|c| matches!(c, HeaderEdit::Remove(n) if n == "x-user-id")));
    assert!(!calls
        .iter()
        .any(|c| matches!(c, HeaderEdit::Remove(n) if n == "x-org-id")));
    assert!(calls.contains(&&HeaderEdit::Set("x-user-id".into(), "user-1".into())));
    assert_eq!(calls.len(), 5, "{calls:?}");
    // A spoofed owned header the filter does not set this time is still removed (an optional
    // tenant claim the token lacks: the token passes without the header).
    let mut e = engine(json!({"tenant_format": {"optional": true}}));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("tenant");
    let t = sign(&json!({"alg": "ES256", "kid": "ec-1"}), &c);
    let mut h = request("GET", "/things", Some(&t));
    h.append("x-tenant-id", "evil");
    let d = run(&mut e, &h);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(!sets(&d).contains_key("x-tenant-id"));
    let calls = crate::engine::host_edits(&d.edits, &h);
    assert!(calls.contains(&&HeaderEdit::Remove("x-tenant-id".into())));
}

#[test]
fn public_routes_and_preflight_still_strip_owned_headers() {
    let mut e = engine(json!({}));
    let mut h = request("GET", "/public/x", None);
    h.append("x-tenant-id", "evil");
    let d = run(&mut e, &h);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.edits.contains(&HeaderEdit::Remove("x-tenant-id".into())));
    assert!(sets(&d).is_empty());
    let mut pre = request("OPTIONS", "/things", None);
    pre.append("origin", "https://app");
    pre.append("access-control-request-method", "POST");
    assert_eq!(run(&mut e, &pre).outcome, Outcome::Allow);
    let plain_options = request("OPTIONS", "/things", None);
    assert_eq!(denial(&run(&mut e, &plain_options)), Denial::MISSING);
    // allow_missing: no token passes (sanitized), a bad token fails.
    let d = run(&mut e, &request("GET", "/optional", None));
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.edits.contains(&HeaderEdit::Remove("x-user-id".into())));
    assert_eq!(
        denial(&run(&mut e, &request("GET", "/optional", Some("a.b.c")))).reason,
        "malformed"
    );
}

#[test]
fn authorization_scopes_and_claims() {
    let mut e = engine(json!({}));
    let t = token("RS256");
    let d = denial(&run(&mut e, &request("POST", "/orders", Some(&t))));
    assert_eq!((d.status(), d.reason), (403, "scope"));
    assert!(d.www_authenticate("api").contains("insufficient_scope"));
    let mut c = claims();
    c["scope"] = json!("orders:read orders:write");
    let t2 = sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &c);
    assert_eq!(
        run(&mut e, &request("POST", "/orders", Some(&t2))).outcome,
        Outcome::Allow
    );
    let d = denial(&run(&mut e, &request("GET", "/admin", Some(&t))));
    assert_eq!((d.status(), d.reason), (403, "claim"));
}

/// The attack corpus, end to end: each must be refused with the stated reason.
#[test]
fn attack_corpus() {
    let mut e = engine(json!({"require_expiration": true, "max_lifetime": "3600s"}));
    let valid = token("RS256");
    let corpus = crate::testing::attack_corpus(NOW);
    assert!(corpus.len() >= 30);
    for case in corpus {
        let d = denial(&run(&mut e, &request("GET", "/x", Some(&case.token))));
        assert_eq!(d, case.expect, "{}", case.name);
        let status = if d.reason == "audience" { 403 } else { 401 };
        assert_eq!(d.status(), status, "{}", case.name);
        assert!(
            d.www_authenticate("api")
                .contains("error=\"invalid_token\""),
            "{}",
            case.name
        );
    }
    // Missing and empty bearer, two Authorization headers, header + query at once.
    let missing = denial(&run(&mut e, &request("GET", "/x", None)));
    assert_eq!(missing.www_authenticate("api"), r#"Bearer realm="api""#);
    let mut empty = request("GET", "/x", None);
    empty.append("authorization", "Bearer ");
    assert_eq!(denial(&run(&mut e, &empty)).reason, "malformed");
    let mut two = request("GET", "/x", Some(&valid));
    two.append("authorization", &format!("Bearer {valid}"));
    assert_eq!(denial(&run(&mut e, &two)).reason, "ambiguous");
    let mut q = engine(
        json!({"from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                              "from_params": ["access_token"]}),
    );
    let both = request("GET", &format!("/x?access_token={valid}"), Some(&valid));
    assert_eq!(denial(&run(&mut q, &both)).reason, "ambiguous");
    let query_only = request("GET", &format!("/x?a=1&access_token={valid}"), None);
    let d = run(&mut q, &query_only);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d
        .edits
        .contains(&HeaderEdit::Set(":path".into(), "/x?a=1".into())));
    // Lower-case scheme is accepted.
    let mut lower = request("GET", "/x", None);
    lower.append("authorization", &format!("bearer {valid}"));
    assert_eq!(run(&mut e, &lower).outcome, Outcome::Allow);
}

#[test]
fn cache_hits_still_enforce_exp_and_revocation() {
    struct RevokeAll;
    impl crate::engine::Revocation for RevokeAll {
        fn is_revoked(
            &self,
            _: &crate::config::Provider,
            _: &serde_json::Map<String, Value>,
        ) -> bool {
            true
        }
    }
    let mut e = engine(json!({"clock_skew_seconds": 0}));
    let t = token("EdDSA");
    let h = request("GET", "/x", Some(&t));
    assert_eq!(run(&mut e, &h).outcome, Outcome::Allow);
    let d = e.authenticate(&h, NOW * 1000, &mut NoRemote, &RevokeAll);
    assert_eq!((denial(&d), d.cache_hits), (Denial::REVOKED, 1));
    let later = e.authenticate(&h, (NOW + 600) * 1000, &mut NoRemote, &NoRevocation);
    assert_eq!((denial(&later).reason, later.cache_hits), ("expired", 0));
}

// ---------------------------------------------------------------------------------------------
// Configuration errors name the field.

#[test]
fn config_errors_name_the_field() {
    let e = |json: &str| FilterConfig::parse(json.as_bytes()).unwrap_err();
    let remote = |extra: &str| {
        format!(
            r#"{{"providers": {{"idp": {{"remote_jwks": {{"cluster": "idp", "path": "/jwks"{extra}}}}}}}}}"#
        )
    };
    let err = e(&remote(r#", "cache_duration": "ten minutes""#));
    assert_eq!(err.field, "providers.idp.remote_jwks.cache_duration");
    assert!(err.reason.contains("600s"), "{}", err.reason);
    assert_eq!(
        e(&remote(r#", "cache_duration": "0.1s""#)).field,
        "providers.idp.remote_jwks.cache_duration"
    );
    assert_eq!(
        e(&remote(r#", "timeuot": "1s""#)).field,
        "providers.idp.remote_jwks.timeuot"
    );
    let ok =
        FilterConfig::parse(remote(r#", "cache_duration": 300, "max_stale": "3600s""#).as_bytes())
            .unwrap();
    match &ok.providers[0].keys {
        crate::config::KeySource::Remote(r) => {
            assert_eq!(
                (r.policy.cache_duration_ms, r.policy.max_stale_ms),
                (300_000, 3_600_000)
            );
            assert_eq!((r.authority.as_str(), r.path.as_str()), ("idp", "/jwks"));
        }
        crate::config::KeySource::Local(_) => panic!("remote expected"),
    }
    assert_eq!(
        ok.providers[0].sources,
        crate::token::TokenSources::default()
    );
    assert_eq!(e(r#"{"providers": {"idp": {}}}"#).field, "providers.idp");
    assert_eq!(
        e(r#"{"providers": {"idp": {"local_jwks": {"inline": "{\"keys\": []}"}}}}"#).field,
        "providers.idp.local_jwks.inline"
    );
    let unknown = e(
        r#"{"providers": {"idp": {"remote_jwks": {"cluster": "c", "path": "/j"}}},
        "rules": [{"requires": {"provider_name": "other"}}]}"#,
    );
    assert_eq!(unknown.field, "rules[0].requires.provider_name");
    let scopes_public = config_json(json!({}), json!([{"required_scopes": ["a"]}]));
    assert_eq!(e(&scopes_public).field, "rules[0].requires");
    let nested = config_json(
        json!({}),
        json!([{"requires": {"requires_any": {"requirements": [{"provider_name": "x"}]}}}]),
    );
    assert_eq!(
        e(&nested).field,
        "rules[0].requires.requires_any.requirements[0].provider_name"
    );
    let bad_match = config_json(json!({}), json!([{"match": {"path_prefix": "x"}}]));
    assert_eq!(e(&bad_match).field, "rules[0].match.path_prefix");
    let bad_header = config_json(
        json!({"claim_to_headers": [{"header_name": "x y", "claim_name": "a"}]}),
        json!([]),
    );
    assert_eq!(
        e(&bad_header).field,
        "providers.idp.claim_to_headers[0].header_name"
    );
    assert_eq!(
        e(&config_json(json!({}), json!([])).replace(r#""realm":"api""#, r#""realm":"a\"b""#))
            .field,
        "realm"
    );
}

// ---------------------------------------------------------------------------------------------
// Remote JWKS through shared data, with injected time.

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

fn remote_config() -> Arc<FilterConfig> {
    let cfg = json!({"providers": {"idp": {"issuer": "https://idp", "remote_jwks": {
        "cluster": "idp", "uri": "https://idp.example/jwks", "cache_duration": "600s", "max_stale": "3600s"}}},
        "rules": [{"requires": {"provider_name": "idp"}}]});
    Arc::new(FilterConfig::parse(cfg.to_string().as_bytes()).unwrap())
}

fn jwks_bytes(keys: &[Value]) -> Vec<u8> {
    json!({"keys": keys}).to_string().into_bytes()
}

#[test]
fn shared_jwks_one_fetch_serves_all_workers() {
    let cfg = remote_config();
    let shared = MemShared::default();
    let (mut w1, mut w2) = (
        WorkerKeys::new(cfg.clone(), "jwt"),
        WorkerKeys::new(cfg.clone(), "jwt"),
    );
    let (mut f1, mut f2) = (Fetches::default(), Fetches::default());
    let t0 = NOW * 1000;
    w1.tick(&shared, &mut f1, t0);
    w2.tick(&shared, &mut f2, t0 + 10);
    assert_eq!(
        (f1.0.len(), f2.0.len()),
        (1, 0),
        "worker 2 sees worker 1's lease"
    );
    // Until keys arrive, requests wait (the fetch is in flight).
    let mut a2 = Authenticator::new(cfg.clone(), 2);
    let h = request("GET", "/x", Some(&token("RS256")));
    let d = a2.authenticate(&h, t0 + 20, &mut w2.store(&shared, &mut f2), &NoRevocation);
    assert_eq!(d.outcome, Outcome::Wait(vec![0]));
    let k = keys();
    let body = jwks_bytes(&[k.rsa.jwk("rsa-1")]);
    assert_eq!(
        w1.on_fetch_result(&shared, 0, Some(&body), t0 + 100),
        crate::keystore::FetchResult::Accepted { skipped: vec![] }
    );
    // A worker whose tick has not run since the keys landed reads them on demand instead of
    // fetching again (found through Envoy with two workers).
    let mut w3 = WorkerKeys::new(cfg.clone(), "jwt");
    let mut f3 = Fetches::default();
    let mut a3 = Authenticator::new(cfg.clone(), 5);
    let d = a3.authenticate(&h, t0 + 150, &mut w3.store(&shared, &mut f3), &NoRevocation);
    assert_eq!((d.outcome, f3.0.len()), (Outcome::Allow, 0));
    assert_eq!(
        w2.tick(&shared, &mut f2, t0 + 200),
        vec![0],
        "worker 2 picks the keys up"
    );
    let d = a2.authenticate(&h, t0 + 300, &mut w2.store(&shared, &mut f2), &NoRevocation);
    assert_eq!(d.outcome, Outcome::Allow);
    // Garbage from the IdP never replaces good keys; backoff follows.
    let refresh_at = t0 + 100 + 540_000;
    w1.tick(&shared, &mut f1, refresh_at);
    assert_eq!(f1.0.len(), 2, "background refresh before expiry");
    assert!(matches!(
        w1.on_fetch_result(&shared, 0, Some(b"<html>oops</html>"), refresh_at + 10),
        crate::keystore::FetchResult::Rejected(_)
    ));
    w1.tick(&shared, &mut f1, refresh_at + 20);
    assert_eq!(f1.0.len(), 2, "backing off");
    // Stale but within max_stale: still served. Past it: refused.
    let stale = t0 + 100 + 600_000 + 1_000;
    let mut a1 = Authenticator::new(cfg.clone(), 3);
    let d = a1.authenticate(
        &h,
        stale,
        &mut w1.store(&shared, &mut Fetches::default()),
        &NoRevocation,
    );
    assert_eq!(d.outcome, Outcome::Allow);
    let expired = t0 + 100 + 600_000 + 3_600_000;
    let mut none = Fetches::default();
    // Expired keys: the request asks for a fetch and waits for it.
    let d = a1.authenticate(
        &h,
        expired,
        &mut w1.store(&shared, &mut none),
        &NoRevocation,
    );
    assert_eq!((d.outcome, none.0.len()), (Outcome::Wait(vec![0]), 1));
    w1.on_fetch_result(&shared, 0, None, expired + 5);
    let d = a1.authenticate(
        &h,
        expired + 6,
        &mut w1.store(&shared, &mut none),
        &NoRevocation,
    );
    assert_eq!(denial(&d), Denial::KEYS_UNAVAILABLE);
}

#[test]
fn unknown_kid_refetches_once_per_interval() {
    let cfg = remote_config();
    let shared = MemShared::default();
    let mut w = WorkerKeys::new(cfg.clone(), "jwt");
    let mut f = Fetches::default();
    let t0 = NOW * 1000;
    w.tick(&shared, &mut f, t0);
    let k = keys();
    w.on_fetch_result(&shared, 0, Some(&jwks_bytes(&[k.rsa.jwk("rsa-1")])), t0 + 1);
    let mut a = Authenticator::new(cfg.clone(), 4);
    let rotated = sign(&json!({"alg": "ES256", "kid": "ec-1"}), &claims());
    let h = request("GET", "/x", Some(&rotated));
    let d = a.authenticate(&h, t0 + 10, &mut w.store(&shared, &mut f), &NoRevocation);
    assert_eq!((d.outcome, f.0.len()), (Outcome::Wait(vec![0]), 2));
    // A random kid storm while the fetch is in flight waits on the same fetch.
    for i in 0..20 {
        let t = sign(
            &json!({"alg": "RS256", "kid": format!("random-{i}")}),
            &claims(),
        );
        let d = a.authenticate(
            &request("GET", "/x", Some(&t)),
            t0 + 20,
            &mut w.store(&shared, &mut f),
            &NoRevocation,
        );
        assert_eq!(d.outcome, Outcome::Wait(vec![0]));
    }
    assert_eq!(f.0.len(), 2, "no fetch storm");
    w.on_fetch_result(
        &shared,
        0,
        Some(&jwks_bytes(&[k.rsa.jwk("rsa-1"), p256_jwk("ec-1")])),
        t0 + 50,
    );
    let d = a.authenticate(&h, t0 + 60, &mut w.store(&shared, &mut f), &NoRevocation);
    assert_eq!(d.outcome, Outcome::Allow, "the waiting request resumes");
    let t = sign(&json!({"alg": "RS256", "kid": "random-x"}), &claims());
    let d = a.authenticate(
        &request("GET", "/x", Some(&t)),
        t0 + 70,
        &mut w.store(&shared, &mut f),
        &NoRevocation,
    );
    assert_eq!(
        (denial(&d).reason, f.0.len()),
        ("unknown_kid", 2),
        "rate limited: 401 at once"
    );
    let d = a.authenticate(
        &request("GET", "/x", Some(&t)),
        t0 + 30_011,
        &mut w.store(&shared, &mut f),
        &NoRevocation,
    );
    assert_eq!(
        (d.outcome, f.0.len()),
        (Outcome::Wait(vec![0]), 3),
        "next interval refetches"
    );
}

mod glue;
mod hardening;
