//! The plugin as Envoy drives it, natively over filter-core's recording `FakeHost`: request
//! headers in; header edits, local replies, resumed requests, dispatched calls and counters
//! out. Context 1 plays the root context, requests run in contexts 2 and up.

use crate::plugin::{JwtPlugin, JwtRequest};
use crate::revocation::pb;
use crate::testing::{jwks, sign};
use filter_core::host::{Buffer, Level, Map};
use filter_core::plugin::{HttpFilter, Plugin};
use filter_core::testing::{Call, CallKind, FakeHost, Reply};
use filter_core::{Action, HeaderMap};
use prost::Message;
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Duration;

pub(super) const NOW: u64 = 1_700_000_000;
const ROOT: u32 = 1;

pub(super) type Jwt = Rc<JwtPlugin<FakeHost>>;

pub(super) fn start(config: &Value) -> (FakeHost, Jwt) {
    let host = FakeHost::at(NOW * 1000);
    match JwtPlugin::configure(host.clone(), config.to_string().as_bytes()) {
        Ok(plugin) => (host, Rc::new(plugin)),
        Err(e) => panic!("{e}"),
    }
}

fn provider_with(keys: Value) -> Value {
    let mut p = json!({
        "issuer": "https://idp",
        "audiences": ["api"],
        "claim_to_headers": [
            {"header_name": "x-org-id", "claim_name": "org.id"},
            {"header_name": "x-team", "claim_name": "team", "optional": true}
        ],
        "tenant_claim": "tenant"
    });
    for (k, v) in keys.as_object().unwrap() {
        p[k] = v.clone();
    }
    json!({"providers": {"idp": p}, "rules": [{"requires": {"provider_name": "idp"}}],
           "realm": "api"})
}

pub(super) fn local_config() -> Value {
    provider_with(json!({"local_jwks": {"inline": jwks(true).to_string()}}))
}

fn remote_config() -> Value {
    provider_with(json!({"remote_jwks": {
        "cluster": "idp-cluster", "uri": "https://idp.example/keys", "timeout": "2s"}}))
}

/// An ES256 token under the test key `ec-1`, with `claims` changed by `f`.
pub(super) fn token_with(f: impl Fn(&mut Value)) -> String {
    let mut c = crate::testing::claims(NOW);
    f(&mut c);
    sign(&json!({"alg": "ES256", "kid": "ec-1"}), &c)
}

pub(super) fn token() -> String {
    token_with(|_| {})
}

/// A request carrying `token` (and `extra` headers) through the plugin in context `ctx`.
pub(super) fn send(
    host: &FakeHost,
    plugin: &Jwt,
    ctx: u32,
    token: &str,
    extra: &[(&str, &str)],
) -> (JwtRequest<FakeHost>, Action) {
    host.enter(ctx);
    let mut headers = HeaderMap::from([
        (":method", "GET"),
        (":path", "/orders"),
        (":authority", "api.example"),
    ]);
    headers.append("authorization", &format!("Bearer {token}"));
    for (n, v) in extra {
        headers.append(n, v);
    }
    host.set_map(Map::RequestHeaders, headers);
    let mut filter = plugin.http_context(ctx);
    let action = filter.on_request_headers(true);
    (filter, action)
}

fn tick(host: &FakeHost, plugin: &Jwt) {
    host.enter(ROOT);
    plugin.tick();
}

pub(super) fn header(host: &FakeHost, ctx: u32, name: &str) -> Option<String> {
    host.map_of(ctx, Map::RequestHeaders)
        .get(name)
        .map(str::to_string)
}

pub(super) fn only_reply(host: &FakeHost) -> Reply {
    let replies = host.take_replies();
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.into_iter().next().unwrap()
}

fn only_call(host: &FakeHost) -> Call {
    let calls = host.take_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls.into_iter().next().unwrap()
}

/// A 401 for `reason`, as the client sees it.
fn assert_refused(reply: &Reply, ctx: u32, reason_text: &str) {
    assert_eq!((reply.context, reply.status), (ctx, 401), "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let www = reply.header("www-authenticate").unwrap();
    assert!(
        www.starts_with("Bearer realm=\"api\", error=\"invalid_token\""),
        "{www}"
    );
    assert_eq!(reply.json()["error"], "invalid_token");
    assert_eq!(reply.json()["message"], reason_text);
}

fn jwks_body() -> Vec<u8> {
    jwks(false).to_string().into_bytes()
}

#[test]
fn a_valid_token_goes_on_with_claim_headers_written_and_owned_headers_removed() {
    let (host, plugin) = start(&local_config());
    let spoofed = [
        ("x-user-id", "admin"),
        ("x-team", "root"),
        ("x-org-id", "1"),
    ];
    let (_, action) = send(&host, &plugin, 2, &token(), &spoofed);
    assert_eq!(action, Action::Continue);
    assert_eq!(header(&host, 2, "x-user-id").as_deref(), Some("user-1"));
    assert_eq!(header(&host, 2, "x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(header(&host, 2, "x-org-id").as_deref(), Some("7"));
    // The token's claims have no team: the spoofed header goes, nothing replaces it.
    assert_eq!(header(&host, 2, "x-team"), None);
    assert_eq!(header(&host, 2, "authorization"), None, "the token leaves");
    let user_ids: Vec<String> = host
        .map_of(2, Map::RequestHeaders)
        .get_all("x-user-id")
        .map(str::to_string)
        .collect();
    assert_eq!(user_ids, ["user-1"]);
    assert!(host.take_replies().is_empty());
}

#[test]
fn a_bad_token_is_refused_with_a_json_401_and_counted() {
    let (host, plugin) = start(&local_config());
    let good = token();
    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", crate::testing::b64([7u8; 64]));
    let (_, action) = send(&host, &plugin, 2, &forged, &[("x-request-id", "r-9")]);
    assert_eq!(action, Action::Pause);
    let reply = only_reply(&host);
    assert_refused(&reply, 2, "token signature is invalid");
    assert_eq!(reply.json()["request_id"], "r-9");
    assert_eq!(host.metric("jwt_auth.denied.bad_signature"), 1);
    assert_eq!(
        header(&host, 2, "x-user-id"),
        None,
        "nothing written upstream"
    );
}

#[test]
fn remote_keys_pause_the_request_until_the_fetch_answers() {
    let (host, plugin) = start(&remote_config());
    let (mut request, action) = send(&host, &plugin, 2, &token(), &[]);
    assert_eq!(action, Action::Pause);
    let call = only_call(&host);
    assert_eq!((call.context, call.cluster.as_str()), (2, "idp-cluster"));
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(call.header(":path"), Some("/keys"));
    assert_eq!(call.header(":authority"), Some("idp.example"));
    assert_eq!(call.timeout, Duration::from_secs(2));
    assert!(host.take_resumed().is_empty());

    // The answer comes back to the context that dispatched the call.
    host.enter(2);
    let body = jwks_body();
    host.answer_http(200, &body);
    request.on_http_call_response(call.token, body.len());
    assert_eq!(host.take_resumed(), [2]);
    assert_eq!(header(&host, 2, "x-user-id").as_deref(), Some("user-1"));
    assert_eq!(header(&host, 2, "authorization"), None);
    assert_eq!(host.metric("jwt_auth.jwks_fetch.success"), 1);
    assert!(host.take_replies().is_empty());

    // Later requests use the keys at once.
    let (_, action) = send(&host, &plugin, 3, &token(), &[]);
    assert_eq!(action, Action::Continue);
    assert!(host.take_calls().is_empty());
}

#[test]
fn paused_requests_share_one_fetch_and_each_gets_its_own_edits() {
    let (host, plugin) = start(&remote_config());
    let user = |sub: &'static str| token_with(move |c| c["sub"] = json!(sub));
    let (mut first, _) = send(&host, &plugin, 2, &user("user-2"), &[]);
    let (_second, a3) = send(&host, &plugin, 3, &user("user-3"), &[]);
    // Context 4 is gone before the keys arrive, without its on_done yet; context 5 is done.
    let (_gone, a4) = send(&host, &plugin, 4, &user("user-4"), &[]);
    let (mut done, a5) = send(&host, &plugin, 5, &user("user-5"), &[]);
    assert_eq!((a3, a4, a5), (Action::Pause, Action::Pause, Action::Pause));
    let call = only_call(&host);
    host.end(4);
    host.end(5);
    done.on_done();

    host.enter(2);
    let body = jwks_body();
    host.answer_http(200, &body);
    first.on_http_call_response(call.token, body.len());
    let mut resumed = host.take_resumed();
    resumed.sort_unstable();
    assert_eq!(resumed, [2, 3]);
    assert_eq!(header(&host, 2, "x-user-id").as_deref(), Some("user-2"));
    assert_eq!(header(&host, 3, "x-user-id").as_deref(), Some("user-3"));
    for gone in [4, 5] {
        assert_eq!(header(&host, gone, "x-user-id"), None, "context {gone}");
        assert!(header(&host, gone, "authorization").is_some());
    }
    assert!(host.take_replies().is_empty());
    assert!(host.take_calls().is_empty(), "one fetch served them all");
    // Nothing is left waiting: a tick long after resumes and refuses nothing.
    host.advance(60_000);
    tick(&host, &plugin);
    assert!(host.take_resumed().is_empty() && host.take_replies().is_empty());
}

#[test]
fn a_failed_fetch_refuses_the_paused_request() {
    let (host, plugin) = start(&remote_config());
    let (mut request, _) = send(&host, &plugin, 2, &token(), &[("x-request-id", "r-1")]);
    let call = only_call(&host);
    host.enter(2);
    host.answer_http(503, b"down");
    request.on_http_call_response(call.token, 4);
    assert_refused(&only_reply(&host), 2, "signing keys are unavailable");
    assert!(host.take_resumed().is_empty());
    assert_eq!(host.metric("jwt_auth.jwks_fetch.failure"), 1);
    assert_eq!(host.metric("jwt_auth.denied.keys_unavailable"), 1);
    let warnings = host.logs(Level::Warn);
    assert!(
        warnings.iter().any(|l| l
            == "jwt_auth: JWKS fetch rejected, keeping the last good keys: fetch failed"),
        "{warnings:?}"
    );
}

#[test]
fn a_fetch_that_never_answers_refuses_the_request_at_its_deadline() {
    let (host, plugin) = start(&remote_config());
    send(&host, &plugin, 2, &token(), &[]);
    only_call(&host);
    // The deadline is the fetch timeout (2s) and one second of margin.
    host.advance(2_999);
    tick(&host, &plugin);
    assert!(host.take_replies().is_empty(), "still waiting");
    host.advance(1);
    tick(&host, &plugin);
    assert_refused(&only_reply(&host), 2, "signing keys are unavailable");
    assert!(host.take_resumed().is_empty());
    // The lost fetch's lease is over: the tick asks again, from the root context.
    assert_eq!(only_call(&host).context, ROOT);
}

#[test]
fn a_fetch_that_cannot_be_dispatched_refuses_at_once() {
    let (host, plugin) = start(&remote_config());
    host.state_mut().refuse_calls = true;
    let (_, action) = send(&host, &plugin, 2, &token(), &[]);
    assert_eq!(action, Action::Pause);
    assert_refused(&only_reply(&host), 2, "signing keys are unavailable");
    let warnings = host.logs(Level::Warn);
    assert!(
        warnings
            .iter()
            .any(|l| l.starts_with("jwt_auth: cannot fetch JWKS from idp-cluster: ")),
        "{warnings:?}"
    );
}

#[test]
fn a_background_refresh_is_answered_in_the_root_context() {
    let (host, plugin) = start(&remote_config());
    let (mut request, _) = send(&host, &plugin, 2, &token(), &[]);
    let first = only_call(&host);
    host.enter(2);
    host.answer_http(200, &jwks_body());
    request.on_http_call_response(first.token, jwks_body().len());
    // 90% of the default cache duration (600s): the tick refreshes before the keys expire.
    host.advance(540_000);
    tick(&host, &plugin);
    let refresh = only_call(&host);
    assert_eq!(refresh.context, ROOT);
    host.enter(ROOT);
    host.answer_http(200, &jwks_body());
    plugin.on_http_call_response(refresh.token, jwks_body().len());
    assert_eq!(host.metric("jwt_auth.jwks_fetch.success"), 2);
    // An answer nobody asked for changes nothing.
    plugin.on_http_call_response(refresh.token + 100, 0);
    assert_eq!(host.metric("jwt_auth.jwks_fetch.failure"), 0);
}

fn revocation_answer(jtis: &[&str], version: u64) -> Vec<u8> {
    let revocations = jtis
        .iter()
        .map(|jti| pb::Revocation {
            issuer: "https://idp".into(),
            jti: (*jti).into(),
            expires_at: NOW + 600,
            version,
        })
        .collect();
    pb::ListRevocationsResponse {
        revocations,
        version,
        full: true,
    }
    .encode_to_vec()
}

/// Answers the one `ListRevocations` call the last tick dispatched.
fn answer_revocations(host: &FakeHost, plugin: &Jwt, status: u32, message: &[u8]) {
    let call = only_call(host);
    assert_eq!((call.context, call.cluster.as_str()), (ROOT, "revocation"));
    let CallKind::Grpc {
        service,
        method,
        message: request,
    } = &call.kind
    else {
        panic!("expected a gRPC call, got {call:?}");
    };
    assert_eq!(service, "edgegate.revocation.v1.RevocationService");
    assert_eq!(method, "ListRevocations");
    assert!(pb::ListRevocationsRequest::decode(request.as_slice()).is_ok());
    host.enter(ROOT);
    host.set_buffer_of(Buffer::GrpcReceive, message.to_vec());
    plugin.on_grpc_call_response(call.token, status, message.len());
}

#[test]
fn revocation_sync_on_tick_refuses_a_revoked_token() {
    let mut config = local_config();
    config["providers"]["idp"]["revocation"] = json!({"cluster": "revocation"});
    let (host, plugin) = start(&config);
    let revoked = token_with(|c| c["jti"] = json!("j-1"));
    let other = token_with(|c| c["jti"] = json!("j-2"));
    // Before the first sync the token passes (and its verification is cached).
    let (_, action) = send(&host, &plugin, 2, &revoked, &[]);
    assert_eq!(action, Action::Continue);

    tick(&host, &plugin);
    answer_revocations(&host, &plugin, 0, &revocation_answer(&["j-1"], 7));
    assert_eq!(host.metric("jwt_auth.revocation.sync.success"), 1);
    assert_eq!(host.metric("jwt_auth.revocation.entries"), 1);

    let (_, action) = send(&host, &plugin, 3, &revoked, &[]);
    assert_eq!(action, Action::Pause);
    assert_refused(&only_reply(&host), 3, "token has been revoked");
    assert_eq!(host.metric("jwt_auth.denied.revoked"), 1);
    let (_, action) = send(&host, &plugin, 4, &other, &[]);
    assert_eq!(action, Action::Continue);

    // The next sync fails: the last list stays in force.
    host.advance(5_000);
    tick(&host, &plugin);
    answer_revocations(&host, &plugin, 14, b"");
    assert_eq!(host.metric("jwt_auth.revocation.sync.failure"), 1);
    let (_, action) = send(&host, &plugin, 5, &revoked, &[]);
    assert_eq!(action, Action::Pause);
    assert_refused(&only_reply(&host), 5, "token has been revoked");
}

#[test]
fn counters_reach_the_host_only_on_flush() {
    let (host, plugin) = start(&local_config());
    send(&host, &plugin, 2, &token(), &[]);
    send(&host, &plugin, 3, &token(), &[]);
    tick(&host, &plugin);
    let batched = [
        "jwt_auth.allowed",
        "jwt_auth.token_cache.miss",
        "jwt_auth.token_cache.hit",
        "jwt_auth.signature_checks",
    ];
    for name in batched {
        assert_eq!(host.metric(name), 0, "{name} before the flush");
    }
    plugin.flush();
    let counts: Vec<i64> = batched.iter().map(|n| host.metric(n)).collect();
    assert_eq!(counts, [2, 1, 1, 1]);
    plugin.flush();
    assert_eq!(
        host.metric("jwt_auth.allowed"),
        2,
        "a flush hands over once"
    );
}

#[test]
fn a_refused_configuration_names_the_field() {
    let mut config = remote_config();
    config["providers"]["idp"]["remote_jwks"] = json!({"cluster": "idp-cluster"});
    let host = FakeHost::at(NOW * 1000);
    let err = JwtPlugin::configure(host.clone(), config.to_string().as_bytes())
        .err()
        .unwrap();
    assert_eq!(err.field, "providers.idp.remote_jwks.path");
    assert_eq!(err.reason, "give exactly one of path and uri");
    let empty = JwtPlugin::configure(host, b" ").err().unwrap();
    assert_eq!(
        (empty.field.as_str(), empty.to_string().contains("empty")),
        ("", true)
    );
}
