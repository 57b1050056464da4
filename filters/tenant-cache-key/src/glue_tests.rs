//! The plugin as Envoy drives it, over the recording fake host: what reaches the host's header
//! maps, which requests are answered locally and with what, when counters reach the host, and
//! the stream slots taken and given back across requests.

use crate::plugin::TenantPlugin;
use crate::{metrics, SourceKind};
use filter_core::host::{Action, Map};
use filter_core::testing::FakeHost;
use filter_core::{HeaderMap, HttpFilter, Plugin};
use serde_json::{json, Value};
use std::rc::Rc;

fn plugin(host: &FakeHost, config: Value) -> Rc<TenantPlugin<FakeHost>> {
    let bytes = config.to_string();
    Rc::new(TenantPlugin::configure(host.clone(), bytes.as_bytes()).unwrap())
}

fn request_stage(extra: Value) -> Value {
    let mut config = json!({
        "stage": "request",
        "sources": [
            { "claim": { "header": "x-jwt-tenant" } },
            { "host": { "suffix": ".api.example.com" } }
        ],
        "unresolved": { "action": "reject", "status": 400 },
        "credential_headers": ["authorization"],
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    config
}

fn headers(path: &str, extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::from([
        (":method", "GET"),
        (":path", path),
        (":authority", "gw.example.com"),
        ("x-request-id", "r-7"),
    ]);
    for (n, v) in extra {
        h.set(n, v);
    }
    h
}

/// Opens request `id` with `h` as its request headers and runs the request-headers phase.
fn open(
    host: &FakeHost,
    p: &Rc<TenantPlugin<FakeHost>>,
    id: u32,
    h: HeaderMap,
) -> (crate::plugin::TenantRequest<FakeHost>, Action) {
    host.enter(id);
    host.set_map(Map::RequestHeaders, h);
    let mut request = p.http_context(id);
    let action = request.on_request_headers(false);
    (request, action)
}

#[test]
fn the_resolved_tenant_replaces_every_forged_copy_on_the_host() {
    let host = FakeHost::at(1_000);
    let p = plugin(&host, request_stage(json!({})));
    let forged = headers(
        "/orders",
        &[("x-jwt-tenant", "acme"), ("x-tenant-id", "globex")],
    );
    let (_, action) = open(&host, &p, 1, forged);
    assert_eq!(action, Action::Continue);
    let sent = host.map_of(1, Map::RequestHeaders);
    assert_eq!(sent.get_all("x-tenant-id").collect::<Vec<_>>(), ["acme"]);
    assert!(host.take_replies().is_empty());
}

#[test]
fn an_unresolved_request_is_answered_with_the_configured_status_and_json() {
    let host = FakeHost::at(1_000);
    let p = plugin(&host, request_stage(json!({})));
    let (_, action) = open(&host, &p, 3, headers("/", &[]));
    assert_eq!(action, Action::Pause, "the local reply ends the request");
    let replies = host.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!((replies[0].context, replies[0].status), (3, 400));
    assert_eq!(replies[0].json()["error"], "tenant_unresolved");
    assert_eq!(replies[0].json()["request_id"], "r-7");
}

#[test]
fn counters_reach_the_host_only_when_flushed() {
    let host = FakeHost::at(1_000);
    let p = plugin(&host, request_stage(json!({})));
    open(&host, &p, 1, headers("/", &[("x-jwt-tenant", "acme")]));
    open(&host, &p, 2, headers("/", &[("x-tenant-id", "forged")]));
    assert_eq!(host.metric(&metrics::resolved(SourceKind::Claim)), 0);
    p.flush();
    assert_eq!(host.metric(&metrics::resolved(SourceKind::Claim)), 1);
    assert_eq!(host.metric(metrics::FORGED_HEADER_REMOVED), 1);
    assert_eq!(host.metric(metrics::UNRESOLVED), 1);
    assert_eq!(host.metric(metrics::REJECTED), 1);
    p.flush();
    assert_eq!(
        host.metric(&metrics::resolved(SourceKind::Claim)),
        1,
        "a flush hands counts over once"
    );
}

/// Key rotation on the host's clock: the old key verifies until its `not_after`, the new one
/// after it too; a refusal is recorded for the audit log with the filter's reason, never the key.
#[test]
fn a_rotated_key_lapses_on_the_host_clock_and_its_refusal_is_audited() {
    use sha2::{Digest, Sha256};
    let hex = |k: &str| -> String {
        Sha256::digest(k.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let host = FakeHost::at(1_000_000);
    let keys = json!({ "api_key": { "keys": [{ "tenant": "acme", "hashes": [
        { "sha256": hex("new-key") },
        { "sha256": hex("old-key"), "not_after": 1_010 }
    ] }] } });
    let p = plugin(&host, request_stage(json!({ "sources": [keys] })));
    let key = |k: &str| headers("/", &[("x-api-key", k)]);
    for (id, k) in [(1, "old-key"), (2, "new-key")] {
        assert_eq!(open(&host, &p, id, key(k)).1, Action::Continue, "{k}");
        let sent = host.map_of(id, Map::RequestHeaders);
        assert_eq!(sent.get("x-tenant-id"), Some("acme"));
        assert_eq!(sent.get("x-api-key"), None, "the key is consumed");
    }
    host.advance(10_000);
    assert_eq!(open(&host, &p, 3, key("old-key")).1, Action::Pause);
    let replies = host.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(
        (replies[0].status, replies[0].json()["error"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let audit: Vec<(u32, String, String)> = (host.state().properties_set.iter())
        .map(|(c, k, v)| (*c, k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    assert_eq!(
        audit,
        [
            (3, "edgegate.audit.filter".into(), "tenant_cache_key".into()),
            (3, "edgegate.audit.reason".into(), "expired_api_key".into()),
        ]
    );
    assert_eq!(open(&host, &p, 4, key("new-key")).1, Action::Continue);
    p.flush();
    assert_eq!(host.metric(metrics::INVALID_API_KEY), 1);
    assert_eq!(host.metric(metrics::EXPIRED_API_KEY), 1);
}

#[test]
fn a_client_certificate_resolves_its_partner_tenant_from_the_connection_only() {
    let host = FakeHost::at(1_000);
    let sources = json!({ "sources": [
        { "claim": { "header": "x-jwt-tenant" } },
        { "client_cert": { "identities": [
            { "uri": "spiffe://partners.example.com/acme", "tenant": "acme" } ] } }
    ] });
    let p = plugin(&host, request_stage(sources));
    // No certificate: a forged client-cert header is nothing; unresolved, refused.
    let forged = headers(
        "/orders",
        &[(
            "x-forwarded-client-cert",
            "URI=spiffe://partners.example.com/acme",
        )],
    );
    let (_, action) = open(&host, &p, 1, forged);
    assert_eq!(action, Action::Pause);
    assert_eq!(host.take_replies()[0].status, 400);
    // The connection's verified certificate: the partner's tenant.
    host.state_mut().properties.insert(
        "connection.uri_san_peer_certificate".into(),
        b"spiffe://partners.example.com/acme".to_vec(),
    );
    let (_, action) = open(&host, &p, 2, headers("/orders", &[]));
    assert_eq!(action, Action::Continue);
    let sent = host.map_of(2, Map::RequestHeaders);
    assert_eq!(sent.get_all("x-tenant-id").collect::<Vec<_>>(), ["acme"]);
    let reads = host.state().property_reads.clone();
    assert!(
        reads.contains(&"connection.uri_san_peer_certificate".to_string()),
        "{reads:?}"
    );
    // A plugin without a client_cert source never reads the connection.
    let host = FakeHost::at(1_000);
    let p = plugin(&host, request_stage(json!({})));
    open(&host, &p, 3, headers("/", &[("x-jwt-tenant", "acme")]));
    assert!(
        !(host.state().property_reads.iter()).any(|r| r.starts_with("connection.")),
        "{:?}",
        host.state().property_reads
    );
}

#[test]
fn a_credentialed_answer_leaves_private_whatever_the_upstream_said() {
    let host = FakeHost::at(1_000);
    let p = plugin(&host, request_stage(json!({})));
    let h = headers(
        "/",
        &[("x-jwt-tenant", "acme"), ("authorization", "Bearer t")],
    );
    let (mut request, _) = open(&host, &p, 1, h);
    host.set_map(
        Map::ResponseHeaders,
        [(":status", "200"), ("cache-control", "public, max-age=60")],
    );
    assert_eq!(request.on_response_headers(false), Action::Continue);
    let cc = host.map_of(1, Map::ResponseHeaders);
    assert!(
        cc.get("cache-control")
            .is_some_and(|v| v.starts_with("private")),
        "{cc:?}"
    );
}

fn streams_plugin(host: &FakeHost) -> Rc<TenantPlugin<FakeHost>> {
    plugin(
        host,
        request_stage(json!({
            "streams": {
                "routes": [{ "match": { "path_prefix": "/api/events" } }],
                "per_consumer": 1,
                "per_tenant": 5,
            }
        })),
    )
}

#[test]
fn a_stream_slot_is_refused_with_429_and_freed_when_the_holder_ends() {
    let host = FakeHost::at(1_000);
    let p = streams_plugin(&host);
    let user = [("x-jwt-tenant", "acme"), ("x-user-id", "u1")];
    let (mut first, action) = open(&host, &p, 1, headers("/api/events", &user));
    assert_eq!(action, Action::Continue);
    let (_, action) = open(&host, &p, 2, headers("/api/events", &user));
    assert_eq!(action, Action::Pause);
    let refusal = &host.take_replies()[0];
    assert_eq!((refusal.context, refusal.status), (2, 429));
    assert_eq!(refusal.json()["limit"], "consumer");
    assert_eq!(refusal.json()["max"], 1);
    assert!(refusal.header("retry-after").is_some());
    // on_done and on_log both come; the slot is given back once.
    first.on_done();
    first.on_log();
    p.flush();
    assert_eq!(host.metric(metrics::STREAMS_RELEASED), 1);
    assert_eq!(host.metric(metrics::STREAMS_ACTIVE), 0);
    let (_, action) = open(&host, &p, 3, headers("/api/events", &user));
    assert_eq!(action, Action::Continue, "the freed slot is taken again");
}

#[test]
fn stream_counts_that_cannot_be_written_fail_closed_with_503() {
    let host = FakeHost::at(1_000);
    let p = streams_plugin(&host);
    host.state_mut().refuse_shared_writes = true;
    let user = [("x-jwt-tenant", "acme"), ("x-user-id", "u1")];
    let (_, action) = open(&host, &p, 1, headers("/api/events", &user));
    assert_eq!(action, Action::Pause);
    let reply = &host.take_replies()[0];
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    p.flush();
    assert_eq!(host.metric(metrics::STREAMS_UNAVAILABLE), 1);
}

#[test]
fn a_slot_whose_holder_stops_renewing_lapses_for_the_next_admission() {
    let host = FakeHost::at(1_000);
    let crashed = streams_plugin(&host);
    let user = [("x-jwt-tenant", "acme"), ("x-user-id", "u1")];
    // The slot's holder never ends (its worker is gone) and never renews.
    let (_held, _) = open(&host, &crashed, 1, headers("/api/events", &user));
    let other = streams_plugin(&host);
    host.advance(crate::streams::LEASE_MS + 1);
    let (_, action) = open(&host, &other, 2, headers("/api/events", &user));
    assert_eq!(action, Action::Continue, "the lapsed slot no longer counts");
    other.tick();
    other.flush();
    assert_eq!(host.metric(metrics::STREAMS_EXPIRED), 1);
}

#[test]
fn a_refused_configuration_names_the_field() {
    let bad = json!({ "stage": "request", "sources": [], "unresolved": { "action": "nope" } });
    let err = TenantPlugin::configure(FakeHost::at(0), bad.to_string().as_bytes())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("field `"), "{err}");
}

/// Route policies: the matched route's `edgegate.tenant` chooses what the stage does.
mod by_route {
    use super::*;

    fn config() -> Value {
        request_stage(json!({
            "policies": {
                "tenant": {},
                "stream": { "stream": true },
                "catalog": { "public": true },
            },
            "streams": { "per_consumer": 1, "per_tenant": 2 },
        }))
    }

    fn with_tenant() -> HeaderMap {
        headers(
            "/any",
            &[
                ("x-jwt-tenant", "acme"),
                ("authorization", "Bearer t"),
                ("x-user-id", "u1"),
            ],
        )
    }

    #[test]
    fn a_route_naming_no_tenant_policy_is_refused_and_one_envoy_answers_is_left_alone() {
        let host = FakeHost::at(0);
        let p = plugin(&host, config());
        host.set_route(&[("jwt", "user")], Some("orders"), true);
        let (_, action) = open(&host, &p, 2, with_tenant());
        assert_eq!(action, Action::Pause);
        let reply = host.take_replies().pop().unwrap();
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (403, Some("forbidden"))
        );
        assert_eq!(
            reply.json()["message"],
            "no tenant policy applies to this route"
        );
        assert_eq!(reply.json()["request_id"], "r-7");

        // No cluster (a direct response, or no route): nothing resolved, the client's tenant
        // header still goes.
        host.set_route(&[], None, false);
        let (_, action) = open(&host, &p, 3, headers("/x", &[("x-tenant-id", "forged")]));
        assert_eq!(action, Action::Continue);
        assert_eq!(host.map_of(3, Map::RequestHeaders).get("x-tenant-id"), None);
        assert!(host.take_replies().is_empty());

        host.set_route(&[("tenant", "nobody")], None, true);
        assert_eq!(open(&host, &p, 4, with_tenant()).1, Action::Pause);
        assert_eq!(host.take_replies().pop().unwrap().status, 500);
    }

    #[test]
    fn the_policy_says_stream_public_or_none() {
        let host = FakeHost::at(0);
        let p = plugin(&host, config());
        // `tenant`: resolved, and the credentialed answer leaves private.
        host.set_route(&[("tenant", "tenant")], None, true);
        let (mut r, action) = open(&host, &p, 2, with_tenant());
        assert_eq!(action, Action::Continue);
        assert_eq!(
            host.map_of(2, Map::RequestHeaders).get("x-tenant-id"),
            Some("acme")
        );
        host.set_map(Map::ResponseHeaders, HeaderMap::from([(":status", "200")]));
        r.on_response_headers(true);
        let cc = host
            .map_of(2, Map::ResponseHeaders)
            .get("cache-control")
            .map(str::to_string);
        assert_eq!(cc.as_deref(), Some("private"));
        // `catalog` is public: no private.
        host.set_route(&[("tenant", "catalog")], None, true);
        let (mut r, _) = open(&host, &p, 3, with_tenant());
        host.set_map(Map::ResponseHeaders, HeaderMap::from([(":status", "200")]));
        r.on_response_headers(true);
        assert_eq!(
            host.map_of(3, Map::ResponseHeaders).get("cache-control"),
            None
        );
        // `stream`: one per consumer; the second is refused.
        host.set_route(&[("tenant", "stream")], None, true);
        assert_eq!(open(&host, &p, 4, with_tenant()).1, Action::Continue);
        assert_eq!(open(&host, &p, 5, with_tenant()).1, Action::Pause);
        let reply = host.take_replies().pop().unwrap();
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (429, Some("too_many_streams"))
        );
        // `none`: nothing resolved even with a tenant claim, and the forged header goes.
        host.set_route(&[("tenant", "none")], None, true);
        let mut h = with_tenant();
        h.set("x-tenant-id", "forged");
        assert_eq!(open(&host, &p, 6, h).1, Action::Continue);
        assert_eq!(host.map_of(6, Map::RequestHeaders).get("x-tenant-id"), None);
    }

    #[test]
    fn a_response_stage_gives_the_policys_lifetime_to_reads_only() {
        let host = FakeHost::at(0);
        let config = json!({
            "stage": "response",
            "policies": { "tenant": {}, "catalog": { "cache": { "ttl": 60 } } },
        });
        let p = plugin(&host, config);
        let cases = [
            (2, "catalog", "GET", true),
            (3, "catalog", "POST", false),
            (4, "tenant", "GET", false),
        ];
        for (id, policy, method, lifetime) in cases {
            host.set_route(&[("tenant", policy)], None, true);
            let mut h = headers("/api/catalog/1", &[("x-tenant-id", "acme")]);
            h.set(":method", method);
            let (mut r, action) = open(&host, &p, id, h);
            assert_eq!(action, Action::Continue);
            host.set_map(Map::ResponseHeaders, HeaderMap::from([(":status", "200")]));
            r.on_response_headers(true);
            let response = host.map_of(id, Map::ResponseHeaders);
            assert_eq!(
                response.get("vary"),
                Some("x-tenant-id"),
                "{policy} {method}"
            );
            let cc = response.get("cache-control").unwrap_or("");
            assert_eq!(
                cc.contains("max-age=60"),
                lifetime,
                "{policy} {method}: {cc:?}"
            );
        }
    }
}
