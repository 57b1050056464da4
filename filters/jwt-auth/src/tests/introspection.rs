//! Opaque tokens through the plugin over the recording host: one introspection call per
//! token however many requests wait for it, answers cached (active and inactive), failures
//! answered with the configured status, and the client secret never written anywhere but the
//! call's Authorization header.

use super::glue::{header, only_reply, start, NOW};
use crate::plugin::JwtRequest;
use base64::Engine as _;
use filter_core::host::{Level, Map};
use filter_core::plugin::{HttpFilter, Plugin};
use filter_core::testing::{CallKind, FakeHost};
use filter_core::{Action, HeaderMap};
use serde_json::{json, Value};

const SECRET: &str = "s3cret-never-logged";
const TOKEN: &str = "2YotnFZFEjr1zCsicMWpAA";

fn config(extra: Value) -> Value {
    let mut i = json!({
        "cluster": "idp", "uri": "https://idp.example/oauth2/introspect",
        "client_id": "gateway", "client_secret": SECRET, "timeout": "1s",
        "cache_duration": "60s", "negative_cache_duration": "5s",
    });
    for (k, v) in extra.as_object().unwrap() {
        i[k] = v.clone();
    }
    json!({
        "realm": "api",
        "providers": {"opaque": {"introspection": i, "audiences": ["api"],
                                  "tenant_claim": "tenant"}},
        "rules": [{"requires": {"provider_name": "opaque"}, "required_scopes": ["orders:read"]}],
    })
}

fn send(
    host: &FakeHost,
    plugin: &super::glue::Jwt,
    ctx: u32,
    token: &str,
) -> (JwtRequest<FakeHost>, Action) {
    host.enter(ctx);
    host.set_map(
        Map::RequestHeaders,
        HeaderMap::from([
            (":method", "GET"),
            (":path", "/orders"),
            (":authority", "api.example"),
            ("authorization", format!("Bearer {token}").as_str()),
        ]),
    );
    let mut filter = plugin.http_context(ctx);
    let action = filter.on_request_headers(true);
    (filter, action)
}

fn active(exp_in: i64) -> Vec<u8> {
    json!({"active": true, "sub": "user-9", "tenant": "acme", "aud": "api",
           "scope": "orders:read profile", "client_id": "spa",
           "exp": NOW as i64 + exp_in})
    .to_string()
    .into_bytes()
}

#[test]
fn concurrent_requests_share_one_call_and_the_answer_is_cached() {
    let (host, plugin) = start(&config(json!({})));
    let mut waiting = Vec::new();
    for ctx in 2..12 {
        let (filter, action) = send(&host, &plugin, ctx, TOKEN);
        assert_eq!(action, Action::Pause);
        waiting.push(filter);
    }
    let calls = host.take_calls();
    assert_eq!(calls.len(), 1, "one call for ten requests: {calls:?}");
    let call = &calls[0];
    assert_eq!(
        (call.cluster.as_str(), call.timeout.as_millis()),
        ("idp", 1000)
    );
    assert_eq!(call.header(":method"), Some("POST"));
    assert_eq!(call.header(":path"), Some("/oauth2/introspect"));
    assert_eq!(call.header(":authority"), Some("idp.example"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("gateway:{SECRET}"));
    assert_eq!(
        call.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    let CallKind::Http { body, .. } = &call.kind else {
        panic!("http call")
    };
    assert_eq!(
        body.as_deref(),
        Some(format!("token={TOKEN}&token_type_hint=access_token").as_bytes())
    );
    host.enter(call.context);
    host.answer_http(200, &active(600));
    waiting[0].on_http_call_response(call.token, active(600).len());
    let mut resumed = host.take_resumed();
    resumed.sort();
    assert_eq!(resumed, (2..12).collect::<Vec<_>>());
    assert_eq!(header(&host, 5, "x-user-id").as_deref(), Some("user-9"));
    assert_eq!(header(&host, 5, "x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(header(&host, 5, "authorization"), None, "the token leaves");
    // Cached: the next request goes on without a call.
    let (_, action) = send(&host, &plugin, 20, TOKEN);
    assert_eq!(action, Action::Continue);
    assert!(host.take_calls().is_empty());
    assert_eq!(host.metric("jwt_auth.introspection.success"), 1);
    // Until min(exp, cache_duration): 60 s here.
    host.advance(60_000);
    let (_, action) = send(&host, &plugin, 21, TOKEN);
    assert_eq!(action, Action::Pause);
    assert_eq!(host.take_calls().len(), 1);
    for level in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
        for line in host.logs(level) {
            assert!(!line.contains(SECRET) && !line.contains(TOKEN), "{line}");
        }
    }
}

/// Inactive, expired, of another audience or without the scope: refused like a JWT would be.
#[test]
fn answers_are_held_to_the_providers_policy() {
    let cases: [(Vec<u8>, u32, &str); 5] = [
        (br#"{"active":false}"#.to_vec(), 401, "token is not active"),
        (active(-120), 401, "token is expired"),
        (
            json!({"active": true, "sub": "u", "tenant": "t", "aud": "web", "scope": "orders:read"})
                .to_string()
                .into_bytes(),
            403,
            "token audience is not allowed",
        ),
        (
            json!({"active": true, "sub": "u", "tenant": "t", "aud": "api", "scope": "profile"})
                .to_string()
                .into_bytes(),
            403,
            "",
        ),
        (b"<html>".to_vec(), 401, "token introspection is temporarily unavailable"),
    ];
    for (i, (body, status, message)) in cases.iter().enumerate() {
        let (host, plugin) = start(&config(json!({})));
        let token = format!("tok-{i}");
        let (mut filter, _) = send(&host, &plugin, 2, &token);
        let call = host.take_calls().pop().unwrap();
        host.answer_http(200, body);
        filter.on_http_call_response(call.token, body.len());
        let reply = only_reply(&host);
        assert_eq!(reply.status, *status, "case {i}: {reply:?}");
        if !message.is_empty() {
            assert_eq!(reply.json()["message"], *message, "case {i}");
        }
    }
}

#[test]
fn inactive_answers_are_cached_for_the_negative_duration() {
    let (host, plugin) = start(&config(json!({})));
    let (mut filter, _) = send(&host, &plugin, 2, TOKEN);
    let call = host.take_calls().pop().unwrap();
    host.answer_http(200, br#"{"active":false}"#);
    filter.on_http_call_response(call.token, 16);
    assert_eq!(only_reply(&host).status, 401);
    send(&host, &plugin, 3, TOKEN);
    assert!(host.take_calls().is_empty(), "negative cache");
    assert_eq!(only_reply(&host).status, 401);
    host.advance(5_000);
    send(&host, &plugin, 4, TOKEN);
    assert_eq!(host.take_calls().len(), 1, "asked again after 5 s");
}

#[test]
fn an_endpoint_that_fails_gets_the_configured_status() {
    for (extra, status) in [(json!({}), 401), (json!({"unavailable_status": 503}), 503)] {
        let (host, plugin) = start(&config(extra));
        let (mut filter, _) = send(&host, &plugin, 2, TOKEN);
        let call = host.take_calls().pop().unwrap();
        host.answer_http(503, b"down");
        filter.on_http_call_response(call.token, 4);
        let reply = only_reply(&host);
        assert_eq!(reply.status, status);
        assert_eq!(
            reply.json()["message"],
            "token introspection is temporarily unavailable"
        );
        assert_eq!(host.metric("jwt_auth.introspection.failure"), 1);
        assert_eq!(host.metric("jwt_auth.denied.introspection_unavailable"), 1);
    }
}

/// `tokens: opaque`: a JWT is left to the other providers (here: none, so it is missing).
#[test]
fn opaque_only_providers_leave_jwts_alone() {
    let (host, plugin) = start(&config(json!({"tokens": "opaque"})));
    let jwt = super::glue::token();
    send(&host, &plugin, 2, &jwt);
    assert!(host.take_calls().is_empty());
    assert_eq!(only_reply(&host).status, 401);
}
