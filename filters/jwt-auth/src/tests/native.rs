//! Envoy's native `jwt_authn` configuration read as written: its field names, its duration and
//! list forms, `provider_and_audiences`, `requirement_map`, its default token locations, and
//! the verified-token cache sized from `jwt_cache_config`.

use super::*;
use crate::testing::{claims as claims_at, sign};

fn native(config: Value) -> Authenticator {
    let cfg = FilterConfig::parse(config.to_string().as_bytes()).unwrap();
    Authenticator::new(Arc::new(cfg), 1)
}

fn provider() -> Value {
    json!({
        "issuer": "https://idp",
        "audiences": "api",
        "local_jwks": {"inline_string": jwks(true).to_string()},
    })
}

fn token_for(aud: &str) -> String {
    let mut c = claims_at(NOW);
    c["aud"] = json!(aud);
    sign(&json!({"alg": "ES256", "kid": kid_for("ES256")}), &c)
}

fn status(e: &mut Authenticator, path: &str, t: Option<&str>) -> u32 {
    match run(e, &request("GET", path, t)).outcome {
        Outcome::Allow => 200,
        Outcome::Deny(d) => d.status(),
        Outcome::Wait(_) => 0,
    }
}

#[test]
fn provider_and_audiences_replaces_the_providers_audiences() {
    let mut e = native(json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"p": provider()},
        "rules": [
            {"match": {"prefix": "/health"}},
            {"match": {"prefix": "/api"}, "requires": {"provider_and_audiences": {
                "provider_name": "p", "audiences": "api_audience"}}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}},
        ],
    }));
    let (api, other) = (token_for("api"), token_for("api_audience"));
    assert_eq!(status(&mut e, "/health", None), 200);
    assert_eq!(status(&mut e, "/api/x", Some(&other)), 200);
    assert_eq!(status(&mut e, "/api/x", Some(&api)), 403);
    assert_eq!(status(&mut e, "/x", Some(&api)), 200);
    // The same token, cached by the first request, still meets each rule's own audiences.
    assert_eq!(status(&mut e, "/x", Some(&other)), 403);
    assert_eq!(status(&mut e, "/api/x", Some(&other)), 200);
    assert_eq!(status(&mut e, "/x", None), 401);
}

/// A token that fails its audience gives no claim headers, even when the request passes
/// (`allow_missing_or_failed`).
#[test]
fn a_token_of_the_wrong_audience_gives_no_identity() {
    let mut e = native(json!({
        "providers": {"p": provider()},
        "rules": [{"match": {"prefix": "/"}, "requires": {"allow_missing_or_failed": {}}}],
    }));
    let d = run(&mut e, &request("GET", "/", Some(&token_for("web"))));
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(!sets(&d).contains_key("x-user-id"), "{:?}", d.edits);
    let d = run(&mut e, &request("GET", "/", Some(&token_for("api"))));
    assert_eq!(sets(&d)["x-user-id"], "user-1");
}

#[test]
fn requirement_map_serves_rules_and_routes() {
    let map = json!({"user": {"provider_name": "p"}, "open": {"allow_missing": {}}});
    let mut by_rule = native(json!({
        "providers": {"p": provider()},
        "requirement_map": map,
        "rules": [
            {"match": {"path": "/open"}, "requirement_name": "open"},
            {"match": {"prefix": "/"}, "requirement_name": "user"},
        ],
    }));
    assert_eq!(status(&mut by_rule, "/open", None), 200);
    assert_eq!(status(&mut by_rule, "/open/x", None), 401);
    assert_eq!(status(&mut by_rule, "/x", Some(&token_for("api"))), 200);
    // Without rules, the route names the entry (native PerRouteConfig.requirement_name).
    let cfg = FilterConfig::parse(
        json!({"providers": {"p": provider()}, "requirement_map": map,
               "routes": {"r1": "user"}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let names: Vec<&str> = cfg
        .routes
        .as_ref()
        .unwrap()
        .policies()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["open", "user"]);
}

#[test]
fn default_locations_are_envoys() {
    let mut e = native(json!({
        "providers": {"p": provider()},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}],
    }));
    let t = token_for("api");
    let d = run(
        &mut e,
        &request("GET", &format!("/x?a=1&access_token={t}"), None),
    );
    assert_eq!(d.outcome, Outcome::Allow);
    // Not forwarded: the parameter leaves the path.
    assert_eq!(sets(&d)[":path"], "/x?a=1");
}

#[test]
fn native_forms_of_keys_durations_and_cache() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(jwks(true).to_string());
    let cfg = FilterConfig::parse(
        json!({
            "providers": {
                "local": {"local_jwks": {"inline_bytes": b64},
                          "forward_payload_header": "x-payload", "pad_forward_payload_header": true,
                          "jwt_cache_config": {"jwt_cache_size": 7}},
                "remote": {"remote_jwks": {
                    "http_uri": {"uri": "https://idp.example/keys", "cluster": "idp", "timeout": "1.5s"},
                    "cache_duration": {"seconds": "300"},
                    "async_fetch": {"fast_listener": true},
                    "retry_policy": {"retry_back_off": {"base_interval": "0.01s"}, "num_retries": 10}},
                    "jwt_cache_config": {"jwt_cache_size": 20, "jwt_max_token_size": 2048},
                    "subjects": {"safe_regex": {"google_re2": {}, "regex": "user-[0-9]+"}}},
            },
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(cfg.token_cache_entries, 20);
    // One cache for the filter: the largest of 2048 and the default 4096.
    assert_eq!(cfg.token_cache_max_token_bytes, 4096);
    let remote = &cfg.providers[cfg.provider_index("remote").unwrap()];
    let crate::config::KeySource::Remote(r) = &remote.keys else {
        panic!("remote keys")
    };
    assert_eq!(
        (r.authority.as_str(), r.path.as_str()),
        ("idp.example", "/keys")
    );
    assert_eq!(r.policy.cache_duration_ms, 300_000);
    assert_eq!(r.policy.fetch_timeout_ms, 1_500);
    assert_eq!(
        (r.policy.backoff_initial_ms, r.policy.backoff_max_ms),
        (10, 100)
    );
    let sub = remote.claims.subjects.as_ref().unwrap();
    assert!(sub.matches("user-42") && !sub.matches("admin-1"));
    // The padded payload: base64url with '=' to a multiple of four.
    let mut c = claims_at(NOW);
    c.as_object_mut().unwrap().remove("iss");
    let t = sign(&json!({"alg": "ES256", "kid": kid_for("ES256")}), &c);
    let rule_cfg = json!({"providers": {"local": {"local_jwks": {"inline_string": jwks(true).to_string()},
        "forward_payload_header": "x-payload", "pad_forward_payload_header": true}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "local"}}]});
    let mut padded = native(rule_cfg);
    let d = run(&mut padded, &request("GET", "/", Some(&t)));
    let got = &sets(&d)["x-payload"];
    assert_eq!(got.len() % 4, 0, "{got}");
    assert_eq!(got.trim_end_matches('='), t.split('.').nth(1).unwrap());
}
