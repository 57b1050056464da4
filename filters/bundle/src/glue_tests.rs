//! The bundle as Envoy drives it, natively over filter-core's recording `FakeHost`: one
//! header-map read, the stages' net difference written back, a request paused for keys and
//! handed back through the later stages, the stream caps, counters on flush.

use crate::plugin::{BundlePlugin, BundleRequest};
use filter_core::host::Map;
use filter_core::testing::{Call, FakeHost};
use filter_core::{Action, HeaderMap, HttpFilter, Plugin};
use jwt_auth::testing::{claims, jwks, sign};
use serde_json::{json, Value};
use std::rc::Rc;

const NOW: u64 = 1_700_000_000;
const ROOT: u32 = 1;

type Bundle = Rc<BundlePlugin<FakeHost>>;

fn provider(keys: Value) -> Value {
    let mut p = json!({
        "issuer": "https://idp",
        "audiences": ["api"],
        "from_headers": [{ "name": "authorization", "value_prefix": "Bearer " }],
        "tenant_claim": "tenant",
        "tenant_header": "x-jwt-tenant",
    });
    if let (Some(p), Some(k)) = (p.as_object_mut(), keys.as_object()) {
        p.extend(k.clone());
    }
    p
}

fn config(keys: Value, tenant_extra: Value) -> Value {
    let mut tenant = json!({
        "stage": "request",
        "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
        "unresolved": { "action": "reject" },
    });
    if let (Some(t), Some(e)) = (tenant.as_object_mut(), tenant_extra.as_object()) {
        t.extend(e.clone());
    }
    json!({
        "jwt_auth": {
            "providers": { "idp": provider(keys) },
            "rules": [{ "match": { "path_prefix": "/" }, "requires": { "provider_name": "idp" } }],
        },
        "tenant_cache_key": tenant,
        "transform": { "rules": [{
            "match": { "headers": [{ "name": "x-tenant-id", "exact": "acme" }] },
            "request": { "headers": { "set": { "x-route": "${header.x-tenant-id}-${header.x-user-id}" } } },
        }] },
    })
}

fn local() -> Value {
    config(
        json!({ "local_jwks": { "inline": jwks(false).to_string() } }),
        json!({}),
    )
}

fn start(config: &Value) -> (FakeHost, Bundle) {
    let host = FakeHost::at(NOW * 1000);
    let plugin = BundlePlugin::configure(host.clone(), config.to_string().as_bytes());
    (host, Rc::new(plugin.unwrap_or_else(|e| panic!("{e}"))))
}

fn token(user: &str) -> String {
    let mut c = claims(NOW);
    c["sub"] = json!(user);
    sign(&json!({ "alg": "ES256", "kid": "ec-1" }), &c)
}

fn send(
    host: &FakeHost,
    bundle: &Bundle,
    ctx: u32,
    path: &str,
    token: Option<&str>,
) -> (BundleRequest<FakeHost>, Action) {
    host.enter(ctx);
    let mut h = HeaderMap::from([
        (":method", "GET"),
        (":path", path),
        (":authority", "api.example"),
        ("x-tenant-id", "forged"),
        ("x-user-id", "forged"),
        ("x-request-id", "r-1"),
    ]);
    if let Some(t) = token {
        h.append("authorization", &format!("Bearer {t}"));
    }
    host.set_map(Map::RequestHeaders, h);
    let mut request = bundle.http_context(ctx);
    let action = request.on_request_headers(true);
    (request, action)
}

fn sent(host: &FakeHost, ctx: u32, name: &str) -> Option<String> {
    host.map_of(ctx, Map::RequestHeaders)
        .get(name)
        .map(str::to_string)
}

#[test]
fn each_stage_sees_the_one_before_and_the_net_difference_reaches_the_host() {
    let (host, bundle) = start(&local());
    let (_, action) = send(&host, &bundle, 2, "/orders", Some(&token("user-1")));
    assert_eq!(action, Action::Continue);
    assert_eq!(sent(&host, 2, "x-user-id").as_deref(), Some("user-1"));
    assert_eq!(sent(&host, 2, "x-tenant-id").as_deref(), Some("acme"));
    // transform matched on the tenant stage's header and rendered jwt_auth's.
    assert_eq!(sent(&host, 2, "x-route").as_deref(), Some("acme-user-1"));
    assert!(host.take_replies().is_empty());
}

#[test]
fn a_refused_token_stops_the_chain_with_jwt_auths_reply() {
    let (host, bundle) = start(&local());
    let (_, action) = send(&host, &bundle, 2, "/orders", Some("not.a.token"));
    assert_eq!(action, Action::Pause);
    let replies = host.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!((replies[0].context, replies[0].status), (2, 401));
    assert_eq!(
        sent(&host, 2, "x-tenant-id").as_deref(),
        Some("forged"),
        "no stage wrote"
    );
    bundle.flush();
    let resolved = tenant_cache_key::metrics::resolved(tenant_cache_key::SourceKind::Claim);
    assert_eq!(host.metric(&resolved), 0);
}

/// The bundle's refusals are audited as the separate filters' are: the refusing stage and its
/// own reason, on the refused request.
#[test]
fn each_stages_refusal_is_recorded_for_the_audit_log() {
    let (host, bundle) = start(&local());
    let mut expired = claims(NOW - 3_000);
    expired["exp"] = json!(NOW - 600);
    let expired = sign(&json!({ "alg": "ES256", "kid": "ec-1" }), &expired);
    let mut no_tenant = claims(NOW);
    no_tenant["tenant"] = json!("evil@tenant");
    let no_tenant = sign(&json!({ "alg": "ES256", "kid": "ec-1" }), &no_tenant);
    assert_eq!(
        send(&host, &bundle, 2, "/orders", Some(&expired)).1,
        Action::Pause
    );
    assert_eq!(
        send(&host, &bundle, 3, "/orders", Some(&no_tenant)).1,
        Action::Pause
    );
    let statuses: Vec<(u32, u32)> = (host.take_replies().iter())
        .map(|r| (r.context, r.status))
        .collect();
    assert_eq!(statuses, [(2, 401), (3, 403)]);
    let audit: Vec<(u32, String, String)> = (host.state().properties_set.iter())
        .map(|(c, k, v)| (*c, k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let expect = |c: u32, k: &str, v: &str| (c, format!("edgegate.audit.{k}"), v.to_string());
    assert_eq!(
        audit,
        [
            expect(2, "filter", "jwt_auth"),
            expect(2, "reason", "expired"),
            expect(3, "filter", "tenant_cache_key"),
            expect(3, "reason", "tenant_unresolved"),
        ]
    );
}

#[test]
fn a_request_paused_for_keys_goes_through_the_later_stages_when_they_arrive() {
    let remote = json!({ "remote_jwks": {
        "cluster": "idp-cluster", "uri": "https://idp.example/keys", "timeout": "2s" } });
    let (host, bundle) = start(&config(remote, json!({})));
    let (mut request, action) = send(&host, &bundle, 2, "/orders", Some(&token("user-1")));
    assert_eq!(action, Action::Pause);
    let calls = host.take_calls();
    assert_eq!(calls.len(), 1);
    host.enter(2);
    let body = jwks(false).to_string().into_bytes();
    host.answer_http(200, &body);
    request.on_http_call_response(calls[0].token, body.len());
    assert_eq!(host.take_resumed(), [2]);
    assert_eq!(sent(&host, 2, "x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(sent(&host, 2, "x-route").as_deref(), Some("acme-user-1"));
}

#[test]
fn a_paused_request_that_ended_is_neither_resumed_nor_answered() {
    let remote = json!({ "remote_jwks": {
        "cluster": "idp-cluster", "uri": "https://idp.example/keys", "timeout": "2s" } });
    let (host, bundle) = start(&config(remote, json!({})));
    let (mut request, _) = send(&host, &bundle, 2, "/orders", Some(&token("user-1")));
    let calls = host.take_calls();
    request.on_done();
    host.end(2);
    host.enter(ROOT);
    let body = jwks(false).to_string().into_bytes();
    host.answer_http(200, &body);
    bundle.on_http_call_response(calls[0].token, body.len());
    assert!(host.take_resumed().is_empty());
    assert!(host.take_replies().is_empty());
}

#[test]
fn stream_caps_count_the_verified_user_and_free_the_slot_at_the_end() {
    let caps = json!({ "streams": {
        "routes": [{ "match": { "path_prefix": "/events" } }],
        "per_consumer": 1, "per_tenant": 10 } });
    let keys = json!({ "local_jwks": { "inline": jwks(false).to_string() } });
    let (host, bundle) = start(&config(keys, caps));
    let alice = token("alice");
    let (mut first, action) = send(&host, &bundle, 2, "/events", Some(&alice));
    assert_eq!(action, Action::Continue);
    // Another user of the tenant is not alice, whatever x-user-id the client sent.
    let (_, action) = send(&host, &bundle, 3, "/events", Some(&token("bob")));
    assert_eq!(action, Action::Continue);
    let (_, action) = send(&host, &bundle, 4, "/events", Some(&alice));
    assert_eq!(action, Action::Pause);
    let replies = host.take_replies();
    assert_eq!((replies[0].context, replies[0].status), (4, 429));
    first.on_done();
    first.on_log();
    let (_, action) = send(&host, &bundle, 5, "/events", Some(&alice));
    assert_eq!(action, Action::Continue, "the slot came back once");
}

#[test]
fn every_stages_counters_reach_the_host_on_flush() {
    let (host, bundle) = start(&local());
    send(&host, &bundle, 2, "/orders", Some(&token("user-1")));
    let resolved = tenant_cache_key::metrics::resolved(tenant_cache_key::SourceKind::Claim);
    assert_eq!(host.metric("jwt_auth.allowed"), 0);
    assert_eq!(host.metric(&resolved), 0);
    bundle.flush();
    assert_eq!(host.metric("jwt_auth.allowed"), 1);
    assert_eq!(host.metric(&resolved), 1);
    assert_eq!(host.metric(transform::metrics::RULES_MATCHED), 1);
}

#[test]
fn a_refused_section_names_the_stage_and_the_field() {
    let bad = json!({ "tenant_cache_key": { "stage": "sideways" } });
    let err = BundlePlugin::configure(FakeHost::at(0), bad.to_string().as_bytes())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("tenant_cache_key.stage"), "{err}");
}

/// The ratelimit service grants 5 tokens of a 10-token lease, to the root.
fn grant_lease(host: &FakeHost, bundle: &Bundle, token: u32) {
    use prost::Message;
    let answer = ratelimit::pb::LeaseResponse {
        mode: ratelimit::pb::LeaseMode::Leased as i32,
        granted: 5,
        expires_in_ms: 5_000,
        lease_size: 10,
        ..Default::default()
    };
    host.enter(ROOT);
    let bytes = answer.encode_to_vec();
    host.set_buffer_of(filter_core::host::Buffer::GrpcReceive, bytes.clone());
    bundle.on_grpc_call_response(token, 0, bytes.len());
}

#[test]
fn the_ratelimit_stage_leases_for_the_tenant_the_stages_before_it_resolved() {
    let mut c = local();
    c["ratelimit"] = json!({
        "cluster": "ratelimit", "domain": "edge", "lease_size": 10,
        "rules": [{ "descriptors": [[
            { "request_headers": { "header_name": "x-tenant-id", "descriptor_key": "tenant" } }
        ]] }]
    });
    let (host, bundle) = start(&c);
    let (_, action) = send(&host, &bundle, 2, "/orders", Some(&token("user-1")));
    assert_eq!(action, Action::Pause, "no token yet");
    assert_eq!(
        sent(&host, 2, "x-tenant-id").as_deref(),
        Some("acme"),
        "edits written first"
    );
    let calls = host.take_calls();
    assert_eq!(calls.len(), 1);
    let filter_core::testing::CallKind::Grpc { message, .. } = &calls[0].kind else {
        panic!("{calls:?}");
    };
    use prost::Message;
    let lease = ratelimit::pb::LeaseRequest::decode(message.as_slice()).unwrap();
    let entry = &lease.descriptors[0].entries[0];
    assert_eq!(
        (entry.key.as_str(), entry.value.as_str()),
        ("tenant", "acme"),
        "not the forged one"
    );
    grant_lease(&host, &bundle, calls[0].token);
    assert_eq!(host.take_resumed(), [2]);
    let (_, action) = send(&host, &bundle, 3, "/orders", Some(&token("user-1")));
    assert_eq!(action, Action::Continue, "a held token: no wait, no call");
}

/// Every stage's policy from the route: one metadata read for the whole bundle, and each stage
/// refusing what its route does not allow.
#[test]
fn the_route_chooses_every_stages_policy_with_one_read() {
    let mut c = local();
    c["jwt_auth"].as_object_mut().unwrap().remove("rules");
    c["jwt_auth"]["requirements"] = json!({ "user": { "requires": { "provider_name": "idp" } } });
    c["tenant_cache_key"]["policies"] = json!({ "tenant": {} });
    c["transform"] = json!({
        "transform_rules": { "tagged": { "request": { "headers": { "set": { "x-route": "tagged" } } } } }
    });
    let (host, bundle) = start(&c);
    let user = token("user-1");

    host.set_route(
        &[
            ("jwt", "user"),
            ("tenant", "tenant"),
            ("transform", "tagged"),
        ],
        Some("r"),
        true,
    );
    host.state_mut().property_reads.clear();
    assert_eq!(
        send(&host, &bundle, 2, "/any", Some(&user)).1,
        Action::Continue
    );
    assert_eq!(sent(&host, 2, "x-tenant-id").as_deref(), Some("acme"));
    assert_eq!(sent(&host, 2, "x-route").as_deref(), Some("tagged"));
    let reads = std::mem::take(&mut host.state_mut().property_reads);
    assert_eq!(
        reads,
        ["xds.route_metadata.filter_metadata.edgegate"],
        "one read"
    );

    // The same request on routes that leave out a policy, or name an undefined one.
    for (ctx, metadata, status, error) in [
        (3, vec![("tenant", "tenant")], 403, "forbidden"),
        (4, vec![("jwt", "user")], 403, "forbidden"),
        (
            5,
            vec![("jwt", "user"), ("tenant", "tenant"), ("transform", "nope")],
            500,
            "policy_error",
        ),
    ] {
        host.set_route(&metadata, None, true);
        assert_eq!(
            send(&host, &bundle, ctx, "/any", Some(&user)).1,
            Action::Pause,
            "{metadata:?}"
        );
        let reply = host.take_replies().pop().unwrap();
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (status, Some(error)),
            "{metadata:?}"
        );
    }
    // jwt and tenant named, transform not: transform has no default, so nothing is set.
    host.set_route(&[("jwt", "user"), ("tenant", "tenant")], None, true);
    assert_eq!(
        send(&host, &bundle, 6, "/any", Some(&user)).1,
        Action::Continue
    );
    assert_eq!(sent(&host, 6, "x-route"), None);
    // A direct response (no cluster): every stage leaves it to Envoy, without a token.
    host.set_route(&[], None, false);
    assert_eq!(send(&host, &bundle, 7, "/gone", None).1, Action::Continue);
    assert_eq!(
        sent(&host, 7, "x-tenant-id"),
        None,
        "the forged tenant still goes"
    );
}

/// The aggregate section: route `dash-route` is answered from a required `user` leg and an
/// `orders` leg.
fn with_aggregate(mut c: Value) -> Value {
    c["aggregate"] = json!({
        "endpoints": { "dash": { "legs": [
            { "name": "user", "cluster": "users", "path": "/users/${header.x-user-id}",
              "required": true },
            { "name": "orders", "cluster": "orders", "path": "/orders" }
        ] } },
        "routes": { "dash-route": "dash" }
    });
    c
}

/// Answers each of `calls` (HTTP legs of context 2) with a small JSON body naming its cluster.
fn answer_legs(host: &FakeHost, request: &mut BundleRequest<FakeHost>, calls: &[Call]) {
    for call in calls {
        host.enter(call.context);
        let body = json!({ "from": call.cluster }).to_string();
        host.answer_http(200, body.as_bytes());
        request.on_http_call_response(call.token, body.len());
    }
}

/// Aggregation is the last stage: its legs carry what the stages before it set (the verified
/// user, never the forged one, and no token); other routes go upstream as before.
#[test]
fn an_aggregated_route_is_answered_from_its_legs_after_every_other_stage() {
    let (host, bundle) = start(&with_aggregate(local()));
    host.set_route(&[], Some("dash-route"), true);
    let (mut request, action) = send(&host, &bundle, 2, "/dash", Some(&token("user-1")));
    assert_eq!(action, Action::Pause);
    assert_eq!(
        request.on_request_body(5, true),
        Action::Pause,
        "no body goes on"
    );
    let calls = host.take_calls();
    let clusters: Vec<&str> = calls.iter().map(|c| c.cluster.as_str()).collect();
    assert_eq!(clusters, ["users", "orders"]);
    assert_eq!(calls[0].header(":path"), Some("/users/user-1"));
    assert_eq!(calls[0].header("x-user-id"), Some("user-1"));
    assert_eq!(calls[1].header("x-tenant-id"), Some("acme"));
    assert_eq!(calls[1].header("authorization"), None);
    answer_legs(&host, &mut request, &calls);
    let replies = host.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(
        replies[0].json(),
        json!({ "user": { "from": "users" }, "orders": { "from": "orders" } })
    );
    assert!(host.take_resumed().is_empty());
    request.on_done();
    bundle.flush();
    assert_eq!(host.metric("aggregate.dash.complete"), 1);

    host.set_route(&[], Some("elsewhere"), true);
    let (_, action) = send(&host, &bundle, 3, "/orders", Some(&token("user-1")));
    assert_eq!(action, Action::Continue);
    assert!(host.take_calls().is_empty());
}

/// A request the ratelimit stage holds for tokens aggregates when the tokens come, instead of
/// being resumed towards the route's cluster.
#[test]
fn a_request_held_for_tokens_aggregates_when_the_limiter_lets_it_go() {
    let mut c = with_aggregate(local());
    c["ratelimit"] = json!({
        "cluster": "ratelimit", "domain": "edge", "lease_size": 10,
        "rules": [{ "descriptors": [[
            { "request_headers": { "header_name": "x-tenant-id", "descriptor_key": "tenant" } }
        ]] }]
    });
    let (host, bundle) = start(&c);
    host.set_route(&[], Some("dash-route"), true);
    let (mut request, action) = send(&host, &bundle, 2, "/dash", Some(&token("user-1")));
    assert_eq!(action, Action::Pause, "no token yet");
    let lease = host.take_calls();
    assert_eq!(lease.len(), 1, "the lease only, no leg yet: {lease:?}");
    grant_lease(&host, &bundle, lease[0].token);
    assert!(
        host.take_resumed().is_empty(),
        "not sent to the route's cluster"
    );
    let legs = host.take_calls();
    assert_eq!(legs.len(), 2, "{legs:?}");
    assert!(
        legs.iter().all(|c| c.context == 2),
        "dispatched for the request"
    );
    answer_legs(&host, &mut request, &legs);
    assert_eq!(host.take_replies().len(), 1);

    // Tokens held now: the next request aggregates at once; leaving mid-way abandons it.
    let (mut gone, action) = send(&host, &bundle, 3, "/dash", Some(&token("user-1")));
    assert_eq!(action, Action::Pause);
    assert_eq!(host.take_calls().len(), 2, "its legs, no lease");
    gone.on_done();
    host.end(3);
    assert!(host.take_resumed().is_empty() && host.take_replies().is_empty());
    bundle.flush();
    assert_eq!(host.metric("aggregate.dash.abandoned"), 1);
}
