//! The in-flight stream caps: which requests a policy counts, and the counting itself on an
//! in-memory twin of proxy-wasm shared data, with several trackers standing in for the worker
//! VMs of one Envoy process.

use crate::streams::{
    update_shared, Admission, Limit, SharedStore, StreamClaim, StreamTracker, LEASE_MS,
    RENEW_EVERY_MS,
};
use crate::{Outcome, TenantPolicy};
use filter_core::HeaderMap;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Shared data as Envoy keeps it: a value and a version per key; a write with a stale version
/// fails, a write without one always lands. `fail_sets` makes the next writes lose the race.
#[derive(Default)]
struct MemStore {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    version: Cell<u32>,
    fail_sets: Cell<usize>,
    sets: Cell<usize>,
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.data.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.sets.set(self.sets.get() + 1);
        if self.fail_sets.get() > 0 {
            self.fail_sets.set(self.fail_sets.get() - 1);
            return false;
        }
        let mut data = self.data.borrow_mut();
        let current = data.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        self.version.set(self.version.get() + 1);
        data.insert(key.to_string(), (value.to_vec(), self.version.get()));
        true
    }
}

fn policy(streams: Value) -> TenantPolicy {
    let config = json!({
        "stage": "request",
        "sources": [
            { "claim": { "header": "x-jwt-tenant" } },
            { "host": { "suffix": ".api.example.com" } }
        ],
        "unresolved": { "action": "anonymous" },
        "streams": streams,
    });
    TenantPolicy::new(config.to_string().as_bytes()).unwrap()
}

/// per_consumer 2, per_tenant 3 on /api/events and the gRPC health service.
fn small_caps() -> TenantPolicy {
    policy(json!({
        "routes": [
            { "match": { "path_prefix": "/api/events" } },
            { "match": { "path_prefix": "/grpc.health.v1.Health/" } }
        ],
        "per_consumer": 2,
        "per_tenant": 3,
    }))
}

fn error(streams: Value) -> String {
    let config = json!({
        "stage": "request",
        "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
        "streams": streams,
    });
    TenantPolicy::new(config.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

fn request(path: &str, tenant: Option<&str>, user: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::from([
        (":method", "GET"),
        (":path", path),
        (":authority", "gw.example.com"),
    ]);
    if let Some(t) = tenant {
        h.append("x-jwt-tenant", t);
    }
    if let Some(u) = user {
        h.append("x-user-id", u);
    }
    h
}

/// The claim `p` plans for an events stream of `user` in `tenant`.
fn claim(p: &TenantPolicy, tenant: &str, user: &str) -> StreamClaim {
    p.request_plan(&request("/api/events", Some(tenant), Some(user)))
        .stream
        .unwrap()
}

fn tracker(p: &TenantPolicy, instance: u32) -> StreamTracker {
    StreamTracker::new(p.streams().unwrap().clone(), instance)
}

const NOW: u64 = 1_000_000;

fn refused(limit: Limit, max: u32) -> Admission {
    Admission::Refused { limit, max }
}

#[test]
fn only_stream_routes_of_requests_that_go_on_are_claimed() {
    let p = small_caps();
    let events = p.request_plan(&request(
        "/api/events/orders?x=1",
        Some("acme"),
        Some("alice"),
    ));
    let claim = events.stream.unwrap();
    assert_eq!(claim.tenant.as_deref(), Some("acme"));
    assert!(claim.consumer.is_some());
    assert_eq!(claim.key(), "tenant_cache_key.streams.tenant/acme");
    let grpc = p.request_plan(&request(
        "/grpc.health.v1.Health/Watch",
        Some("acme"),
        Some("alice"),
    ));
    assert_eq!(
        grpc.stream,
        Some(claim.clone()),
        "same tenant, same consumer"
    );

    assert_eq!(
        p.request_plan(&request("/api/orders", Some("acme"), None))
            .stream,
        None
    );

    // A tenant only the host names is another tenant: `~acme` never uses acme's slots.
    let mut hosted = request("/api/events", None, Some("alice"));
    hosted.set(":authority", "acme.api.example.com");
    let hosted = p.request_plan(&hosted).stream.unwrap();
    assert_eq!(hosted.tenant.as_deref(), Some("~acme"));
    assert_ne!(hosted.key(), claim.key());

    // No tenant: the anonymous bucket; no consumer header: no consumer.
    let anonymous = p.request_plan(&request("/api/events", None, None));
    assert_eq!(anonymous.outcome, Outcome::Anonymous);
    let anonymous = anonymous.stream.unwrap();
    assert_eq!((anonymous.tenant, anonymous.consumer), (None, None));

    // A request the tenant stage refuses opens nothing.
    let rejecting = TenantPolicy::new(
        json!({
            "stage": "request",
            "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
            "streams": { "routes": [{ "match": {} }], "per_consumer": 1, "per_tenant": 1 },
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let plan = rejecting.request_plan(&request("/api/events", None, Some("alice")));
    assert!(matches!(plan.outcome, Outcome::Reject { .. }));
    assert_eq!(plan.stream, None);
}

#[test]
fn consumers_are_capped_then_the_tenant_and_other_tenants_are_not_affected() {
    let p = small_caps();
    let store = MemStore::default();
    // Two worker VMs of one Envoy, with their own context ids (which repeat across VMs).
    let mut w1 = tracker(&p, 1);
    let mut w2 = tracker(&p, 2);
    let alice = claim(&p, "acme", "alice");
    assert_eq!(w1.admit(&store, 10, &alice, NOW), Admission::Admitted);
    assert_eq!(w2.admit(&store, 10, &alice, NOW), Admission::Admitted);
    assert_eq!(
        w1.admit(&store, 11, &alice, NOW),
        refused(Limit::Consumer, 2),
        "the count is process-wide, not per worker"
    );
    let bob = claim(&p, "acme", "bob");
    assert_eq!(w1.admit(&store, 12, &bob, NOW), Admission::Admitted);
    assert_eq!(w2.admit(&store, 12, &bob, NOW), refused(Limit::Tenant, 3));
    assert_eq!(
        w1.admit(&store, 13, &claim(&p, "acme", "carol"), NOW),
        refused(Limit::Tenant, 3)
    );
    // Another tenant (and the same user id in it) has its own slots.
    for id in [20, 21] {
        let a = w1.admit(&store, id, &claim(&p, "globex", "alice"), NOW);
        assert_eq!(a, Admission::Admitted);
    }
    assert_eq!((w1.held(), w2.held()), (4, 1));

    // A refused stream holds nothing: its end releases nothing.
    assert!(!w1.end(&store, 11, NOW));
    assert!(!w1.end(&store, 13, NOW));
    assert_eq!(
        w1.admit(&store, 14, &alice, NOW),
        refused(Limit::Consumer, 2)
    );
    // An ended stream frees its slot once, however often its end is reported (on_done, on_log).
    assert!(w2.end(&store, 10, NOW));
    assert!(!w2.end(&store, 10, NOW));
    assert_eq!(w1.admit(&store, 15, &alice, NOW), Admission::Admitted);
    assert_eq!(
        w1.admit(&store, 16, &alice, NOW),
        refused(Limit::Consumer, 2)
    );
    assert_eq!(w2.admit(&store, 17, &bob, NOW), refused(Limit::Tenant, 3));
    // Admitting the same request again counts nothing more.
    assert_eq!(w1.admit(&store, 15, &alice, NOW), Admission::Admitted);
    assert_eq!(w1.held(), 5);
}

#[test]
fn every_end_frees_exactly_its_own_slot() {
    let p = small_caps();
    let store = MemStore::default();
    let mut w1 = tracker(&p, 1);
    let mut w2 = tracker(&p, 2);
    let alice = claim(&p, "acme", "alice");
    let bob = claim(&p, "acme", "bob");
    // Same context id on two workers: ending one must not free the other's slot.
    assert_eq!(w1.admit(&store, 7, &alice, NOW), Admission::Admitted);
    assert_eq!(w2.admit(&store, 7, &bob, NOW), Admission::Admitted);
    assert_eq!(w2.admit(&store, 8, &bob, NOW), Admission::Admitted);
    assert!(w1.end(&store, 7, NOW));
    assert!(!w1.end(&store, 7, NOW), "never twice");
    // acme holds bob's two; alice may open two again, but the tenant has room for one.
    assert_eq!(w1.admit(&store, 9, &alice, NOW), Admission::Admitted);
    assert_eq!(w1.admit(&store, 10, &alice, NOW), refused(Limit::Tenant, 3));
    assert!(w2.end(&store, 7, NOW) && w2.end(&store, 8, NOW) && w1.end(&store, 9, NOW));
    for id in 30..33 {
        let user = format!("u{id}");
        let a = w1.admit(&store, id, &claim(&p, "acme", &user), NOW);
        assert_eq!(a, Admission::Admitted, "all of acme's slots are free again");
    }
}

#[test]
fn streams_without_a_consumer_count_against_the_tenant_only() {
    let p = small_caps();
    let store = MemStore::default();
    let mut w = tracker(&p, 1);
    let nobody = p
        .request_plan(&request("/api/events", Some("acme"), None))
        .stream
        .unwrap();
    for id in 0..3 {
        assert_eq!(w.admit(&store, id, &nobody, NOW), Admission::Admitted);
    }
    assert_eq!(w.admit(&store, 3, &nobody, NOW), refused(Limit::Tenant, 3));
    let alice = claim(&p, "acme", "alice");
    assert_eq!(w.admit(&store, 4, &alice, NOW), refused(Limit::Tenant, 3));
}

#[test]
fn a_stopped_holders_slots_lapse_while_live_holders_renew_theirs() {
    let p = small_caps();
    let store = MemStore::default();
    let alice = claim(&p, "acme", "alice");
    // A worker VM that crashes while holding two streams: it never releases them.
    let mut crashed = tracker(&p, 1);
    assert_eq!(crashed.admit(&store, 1, &alice, NOW), Admission::Admitted);
    assert_eq!(crashed.admit(&store, 2, &alice, NOW), Admission::Admitted);
    drop(crashed);
    let mut live = tracker(&p, 2);
    let bob = claim(&p, "acme", "bob");
    assert_eq!(live.admit(&store, 1, &bob, NOW), Admission::Admitted);
    assert_eq!(
        live.admit(&store, 2, &alice, NOW),
        refused(Limit::Consumer, 2)
    );

    // The live worker ticks through the whole lease: bob's stream stays counted.
    let mut now = NOW;
    while now <= NOW + LEASE_MS {
        now += 1_000;
        live.tick(&store, now);
    }
    assert_eq!(live.admit(&store, 3, &alice, now), Admission::Admitted);
    assert_eq!(live.admit(&store, 4, &alice, now), Admission::Admitted);
    assert_eq!(live.take_expired(), 2, "the crashed worker's two entries");
    assert_eq!(
        live.admit(&store, 5, &claim(&p, "acme", "carol"), now),
        refused(Limit::Tenant, 3),
        "bob's renewed stream still counts"
    );
    // Right at the expiry nothing of the live worker lapses.
    assert_eq!(live.take_expired(), 0);
}

#[test]
fn an_entry_lost_to_a_concurrent_first_write_is_restored_by_the_next_renewal() {
    let p = small_caps();
    let store = MemStore::default();
    let alice = claim(&p, "acme", "alice");
    let mut w = tracker(&p, 1);
    assert_eq!(w.admit(&store, 1, &alice, NOW), Admission::Admitted);
    // Another worker that read "no value" before the first write writes unconditionally.
    let mut other = tracker(&p, 2);
    store.data.borrow_mut().clear();
    assert_eq!(other.admit(&store, 1, &alice, NOW), Admission::Admitted);
    assert_eq!(
        other.admit(&store, 2, &alice, NOW),
        Admission::Admitted,
        "undercount"
    );
    assert!(other.end(&store, 2, NOW));
    w.tick(&store, NOW + RENEW_EVERY_MS);
    assert_eq!(
        other.admit(&store, 3, &alice, NOW + RENEW_EVERY_MS),
        refused(Limit::Consumer, 2),
        "the first worker's stream is counted again"
    );
}

#[test]
fn lost_races_are_retried_and_a_count_that_cannot_be_written_refuses() {
    let p = small_caps();
    let store = MemStore::default();
    let alice = claim(&p, "acme", "alice");
    let mut w = tracker(&p, 1);
    store.fail_sets.set(3);
    assert_eq!(w.admit(&store, 1, &alice, NOW), Admission::Admitted);
    assert_eq!(store.sets.get(), 4, "three lost races, then the write");

    store.fail_sets.set(usize::MAX);
    assert_eq!(w.admit(&store, 2, &alice, NOW), Admission::Unavailable);
    assert_eq!(w.held(), 1, "nothing counted for the refused stream");
    assert!(!w.end(&store, 2, NOW));
    // A release that cannot be written is kept and retried on the tick.
    assert!(w.end(&store, 1, NOW));
    store.fail_sets.set(0);
    let bob = claim(&p, "acme", "bob");
    let mut other = tracker(&p, 2);
    for id in 0..2 {
        assert_eq!(other.admit(&store, id, &bob, NOW), Admission::Admitted);
    }
    assert_eq!(
        other.admit(&store, 2, &alice, NOW),
        refused(Limit::Tenant, 3),
        "alice's slot is still taken until the retry"
    );
    w.tick(&store, NOW + 1);
    assert_eq!(other.admit(&store, 2, &alice, NOW + 1), Admission::Admitted);
}

#[test]
fn update_shared_writes_only_what_changes_and_gives_up_after_its_attempts() {
    let store = MemStore::default();
    let read_only = update_shared(&store, "k", 4, |v| (None, v.is_none()));
    assert_eq!(read_only, Some(true));
    assert_eq!(store.sets.get(), 0);
    assert_eq!(
        update_shared(&store, "k", 4, |_| (Some(vec![1]), 7)),
        Some(7)
    );
    store.fail_sets.set(4);
    assert_eq!(update_shared(&store, "k", 4, |_| (Some(vec![2]), ())), None);
    assert_eq!(store.get("k").0, Some(vec![1]));
}

#[test]
fn a_value_of_another_format_reads_as_no_streams() {
    let p = small_caps();
    let store = MemStore::default();
    let alice = claim(&p, "acme", "alice");
    store.set(&alice.key(), b"\x07garbage", None);
    let mut w = tracker(&p, 1);
    assert_eq!(w.admit(&store, 1, &alice, NOW), Admission::Admitted);
    assert_eq!(w.admit(&store, 2, &alice, NOW), Admission::Admitted);
    assert_eq!(w.admit(&store, 3, &alice, NOW), refused(Limit::Consumer, 2));
}

#[test]
fn the_streams_block_is_validated_field_by_field() {
    let routes = json!([{ "match": { "path_prefix": "/api/events" } }]);
    let cases = [
        (
            json!({ "routes": routes, "per_consumer": 0, "per_tenant": 4 }),
            "field `streams.per_consumer`: must be at least 1",
        ),
        (
            json!({ "routes": routes, "per_consumer": 1, "per_tenant": 0 }),
            "field `streams.per_tenant`: 0 is out of range (1 to 1024)",
        ),
        (
            json!({ "routes": routes, "per_consumer": 1, "per_tenant": 5000 }),
            "field `streams.per_tenant`: 5000 is out of range (1 to 1024)",
        ),
        (
            json!({ "routes": routes, "per_consumer": 9, "per_tenant": 8 }),
            "field `streams.per_consumer`: 9 is more than per_tenant (8)",
        ),
        (
            json!({ "routes": [], "per_consumer": 1, "per_tenant": 1 }),
            "field `streams.routes`: at least one route is required",
        ),
        (
            json!({ "routes": [{ "match": { "path_regex": "(" } }], "per_consumer": 1, "per_tenant": 1 }),
            "field `streams.routes[0].match.path_regex`: invalid regular expression",
        ),
        (
            json!({ "routes": routes, "per_consumer": 1, "per_tenant": 1, "consumer_header": "x user" }),
            "field `streams.consumer_header`: \"x user\" is not a valid header name",
        ),
        (
            json!({ "routes": routes, "per_consumer": 1, "per_tenant": 1, "consumer_header": "X-Tenant-Id" }),
            "field `streams.consumer_header`: \"x-tenant-id\" is the tenant or plan header",
        ),
        (
            json!({ "routes": routes, "per_consumer": -1, "per_tenant": 1 }),
            "field `streams.per_consumer`: invalid value: integer `-1`",
        ),
        (
            json!({ "routes": routes, "per_tenant": 1 }),
            "missing field `per_consumer`",
        ),
        (
            json!({ "routes": routes, "per_consumer": 1, "per_tenant": 1, "per_user": 1 }),
            "field `streams.per_user`: unknown field `per_user`",
        ),
    ];
    for (streams, expected) in cases {
        let message = error(streams.clone());
        assert!(
            message.contains(expected),
            "{streams}: expected {expected:?} in {message:?}"
        );
    }
    let response_stage = TenantPolicy::new(
        json!({ "stage": "response", "streams": { "routes": routes, "per_consumer": 1, "per_tenant": 1 } })
            .to_string()
            .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(response_stage.field, "streams");
    assert!(response_stage
        .reason
        .contains("only used by the request stage"));
}

/// The `tenant_request` configuration proposed for envoy/gateway.yaml (docs/tenant.md's example):
/// it compiles, and counts WebSockets on /api/events and calls to the gRPC health service.
#[test]
fn the_gateway_request_stage_with_stream_caps_compiles() {
    let p = TenantPolicy::new(
        br#"{
          "stage": "request",
          "tenant_header": "x-tenant-id",
          "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
          "unresolved": { "action": "reject" },
          "credential_headers": ["authorization", "x-user-id"],
          "streams": {
            "routes": [
              { "match": { "path_regex": "/api/events(/.*)?" } },
              { "match": { "path_prefix": "/grpc.health.v1.Health/" } }
            ],
            "per_consumer": 8,
            "per_tenant": 32,
            "consumer_header": "x-user-id"
          }
        }"#,
    )
    .unwrap();
    let limits = p.streams().unwrap();
    assert_eq!((limits.per_consumer(), limits.per_tenant()), (8, 32));
    for (path, stream) in [
        ("/api/events", true),
        ("/api/events/orders?since=1", true),
        ("/grpc.health.v1.Health/Watch", true),
        ("/api/eventsource", false),
        ("/api/orders", false),
    ] {
        let plan = p.request_plan(&request(path, Some("acme"), Some("alice")));
        assert_eq!(plan.stream.is_some(), stream, "{path}");
    }
}
