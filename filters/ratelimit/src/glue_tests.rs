//! The stage as Envoy drives it, natively over filter-core's recording `FakeHost`: requests in;
//! lease calls (from the root context), resumed and refused requests, response headers out.
//! Two plugins on one FakeHost play two workers of one Envoy (they share its shared data).

use crate::metrics;
use crate::pb::{LeaseMode, LeaseRequest, LeaseResponse, LimitState};
use crate::plugin::{RateLimitPlugin, RateLimitRequest};
use filter_core::host::Map;
use filter_core::testing::{CallKind, FakeHost};
use filter_core::{Action, HeaderMap, HttpFilter, Plugin};
use prost::Message;
use serde_json::json;
use std::rc::Rc;

const ROOT: u32 = 1;
type Stage = Rc<RateLimitPlugin<FakeHost>>;

fn config(failure_mode: &str) -> String {
    json!({
        "cluster": "ratelimit", "domain": "edge", "timeout_ms": 250,
        "failure_mode": failure_mode, "lease_size": 10,
        "rules": [{
            "match": { "path_prefix": "/api" },
            "descriptors": [
                [{ "request_headers": { "header_name": "x-tenant-id", "descriptor_key": "tenant" } }],
                [{ "generic_key": { "descriptor_key": "route", "descriptor_value": "api" } }]
            ]
        }]
    })
    .to_string()
}

fn start(host: &FakeHost, failure_mode: &str) -> Stage {
    start_with(host, config(failure_mode))
}

/// A stage (one worker's VM) on `host` with configuration `config`.
fn start_with(host: &FakeHost, config: impl ToString) -> Stage {
    let plugin = RateLimitPlugin::configure(host.clone(), config.to_string().as_bytes());
    Rc::new(plugin.unwrap_or_else(|e| panic!("{e}")))
}

fn send(
    host: &FakeHost,
    stage: &Stage,
    ctx: u32,
    tenant: &str,
) -> (RateLimitRequest<FakeHost>, Action) {
    host.enter(ctx);
    let h = HeaderMap::from([
        (":method", "GET"),
        (":path", "/api/users"),
        ("x-tenant-id", tenant),
        ("x-request-id", "r-9"),
    ]);
    host.set_map(Map::RequestHeaders, h);
    let mut request = stage.http_context(ctx);
    let action = request.on_request_headers(true);
    (request, action)
}

fn answer(mode: LeaseMode, granted: u32, limit: u32) -> LeaseResponse {
    LeaseResponse {
        mode: mode as i32,
        granted,
        expires_in_ms: 5_000,
        retry_after_ms: if granted == 0 { 20_000 } else { 0 },
        limits: vec![LimitState {
            name: "tenant".into(),
            requests_per_unit: limit,
            unit_seconds: 60,
            remaining: 7,
            reset_ms: 30_000,
            next_token_ms: 0,
        }],
        lease_size: 10,
    }
}

/// The lease calls sent so far: (token, the context they answer to, the request).
fn leases(host: &FakeHost) -> Vec<(u32, u32, LeaseRequest)> {
    host.take_calls()
        .into_iter()
        .map(|c| match c.kind {
            CallKind::Grpc {
                service,
                method,
                message,
            } => {
                assert_eq!(
                    (service.as_str(), method.as_str()),
                    ("edgegate.ratelimit.v1.QuotaLease", "Lease")
                );
                assert_eq!(c.cluster, "ratelimit");
                (
                    c.token,
                    c.context,
                    LeaseRequest::decode(message.as_slice()).unwrap(),
                )
            }
            CallKind::Http { .. } => panic!("unexpected HTTP call"),
        })
        .collect()
}

/// The answer to the call `(token, context)`, delivered to the context that sent it (the
/// root's tick for background refills, a waiting request's own context otherwise).
fn respond(host: &FakeHost, stage: &Stage, call: (u32, u32), answer: &LeaseResponse) {
    let (token, context) = call;
    host.enter(context);
    let bytes = answer.encode_to_vec();
    host.set_buffer_of(filter_core::host::Buffer::GrpcReceive, bytes.clone());
    stage.limiter.on_lease_response(token, 0, bytes.len());
}

#[test]
fn a_pool_fills_once_then_admits_without_a_call_until_its_low_water_mark() {
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "allow");
    let (_, action) = send(&host, &stage, 2, "acme");
    assert_eq!(
        action,
        Action::Pause,
        "no token yet: it waits for the first lease"
    );
    let calls = leases(&host);
    assert_eq!(calls.len(), 1);
    let (token, context, request) = &calls[0];
    assert_eq!(*context, 2, "a waiting request asks from its own context");
    assert_eq!((request.domain.as_str(), request.want), ("edge", 10));
    let entries: Vec<_> = (request.descriptors.iter())
        .map(|d| (d.entries[0].key.clone(), d.entries[0].value.clone()))
        .collect();
    assert_eq!(
        entries,
        [
            ("tenant".into(), "acme".into()),
            ("route".into(), "api".into())
        ]
    );

    respond(
        &host,
        &stage,
        (*token, *context),
        &answer(LeaseMode::Leased, 10, 100),
    );
    assert_eq!(host.take_resumed(), [2]);
    // 9 tokens left: requests spend them with no call until half the lease is left.
    for ctx in 3..=5 {
        assert_eq!(send(&host, &stage, ctx, "acme").1, Action::Continue);
    }
    assert!(leases(&host).is_empty());
    assert_eq!(send(&host, &stage, 6, "acme").1, Action::Continue);
    assert!(
        leases(&host).is_empty(),
        "the refill waits for the root tick"
    );
    assert_eq!(
        host.state().tick_period,
        Some(crate::host::SOON),
        "the root's next tick is hurried"
    );
    host.enter(ROOT);
    stage.tick();
    assert_eq!(host.state().tick_period, Some(filter_core::plugin::TICK));
    let refill = leases(&host);
    assert_eq!(
        refill.len(),
        1,
        "the low water mark queued one background refill"
    );
    assert_eq!(refill[0].1, ROOT);
    for ctx in 7..=11 {
        assert_eq!(send(&host, &stage, ctx, "acme").1, Action::Continue);
    }
    assert!(leases(&host).is_empty(), "one refill in flight at a time");
    assert_eq!(
        send(&host, &stage, 12, "acme").1,
        Action::Pause,
        "10 spent: the 11th waits"
    );
    stage.flush();
    assert_eq!(host.metric(metrics::ADMITTED), 10);
}

#[test]
fn an_empty_bucket_is_a_429_with_the_limit_and_later_requests_are_refused_locally() {
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "allow");
    send(&host, &stage, 2, "tiny");
    let (token, from, _) = leases(&host)[0].clone();
    respond(
        &host,
        &stage,
        (token, from),
        &answer(LeaseMode::Leased, 0, 3),
    );
    let replies = host.take_replies();
    assert_eq!((replies[0].context, replies[0].status), (2, 429));
    assert_eq!(replies[0].json()["error"], "rate_limited");
    assert_eq!(replies[0].header("retry-after"), Some("20"));
    assert_eq!(replies[0].header("x-ratelimit-limit"), Some("3, 3;w=60"));
    assert_eq!(replies[0].header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(replies[0].header("x-ratelimit-reset"), Some("30"));
    let (_, action) = send(&host, &stage, 3, "tiny");
    assert_eq!(action, Action::Pause);
    assert_eq!(host.take_replies()[0].status, 429);
    // Both refusals recorded for the audit log on their own request: the limit by its name.
    let audit: Vec<(u32, String, Vec<u8>)> = host.state().properties_set.clone();
    let limits: Vec<(u32, &[u8])> = (audit.iter())
        .filter(|(_, k, _)| k == "edgegate.audit.limit")
        .map(|(c, _, v)| (*c, v.as_slice()))
        .collect();
    assert_eq!(limits, [(2, &b"rules[0]"[..]), (3, &b"rules[0]"[..])]);
    assert!(audit.iter().any(|(c, k, v)| (*c, k.as_str(), v.as_slice())
        == (3, "edgegate.audit.reason", &b"rate_limited"[..])));
    assert!(
        leases(&host).is_empty(),
        "refused without asking until retry-after passes"
    );
}

#[test]
fn exact_limits_ask_for_one_token_per_request() {
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "allow");
    send(&host, &stage, 2, "tiny");
    let (token, from, _) = leases(&host)[0].clone();
    respond(
        &host,
        &stage,
        (token, from),
        &answer(LeaseMode::Exact, 1, 3),
    );
    assert_eq!(host.take_resumed(), [2]);
    for ctx in [3, 4] {
        assert_eq!(send(&host, &stage, ctx, "tiny").1, Action::Pause);
    }
    let calls = leases(&host);
    assert_eq!(calls.iter().map(|c| c.2.want).collect::<Vec<_>>(), [1, 1]);
    respond(
        &host,
        &stage,
        (calls[0].0, calls[0].1),
        &answer(LeaseMode::Exact, 1, 3),
    );
    assert!(
        leases(&host).is_empty(),
        "the other waiter's own call is still in flight"
    );
    respond(
        &host,
        &stage,
        (calls[1].0, calls[1].1),
        &answer(LeaseMode::Exact, 0, 3),
    );
    assert_eq!(host.take_resumed(), [3]);
    let replies = host.take_replies();
    assert_eq!((replies[0].context, replies[0].status), (4, 429));
}

#[test]
fn an_unlimited_answer_admits_without_tokens_until_it_expires() {
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "allow");
    send(&host, &stage, 2, "free");
    let (token, from, _) = leases(&host)[0].clone();
    respond(
        &host,
        &stage,
        (token, from),
        &answer(LeaseMode::Unlimited, 0, 0),
    );
    assert_eq!(host.take_resumed(), [2]);
    for ctx in 3..40 {
        assert_eq!(send(&host, &stage, ctx, "free").1, Action::Continue);
    }
    assert!(leases(&host).is_empty());
    host.advance(5_001);
    assert_eq!(send(&host, &stage, 40, "free").1, Action::Pause);
}

#[test]
fn an_unreachable_service_fails_open_or_closed_as_configured() {
    for (mode, resumed, status) in [("allow", vec![2], None), ("deny", vec![], Some(503))] {
        let host = FakeHost::at(1_000_000);
        let stage = start(&host, mode);
        send(&host, &stage, 2, "acme");
        let (token, from, _) = leases(&host)[0].clone();
        host.enter(from);
        stage.limiter.on_lease_response(token, 14, 0); // UNAVAILABLE
        assert_eq!(host.take_resumed(), resumed, "{mode}");
        let replies = host.take_replies();
        assert_eq!(replies.first().map(|r| r.status), status, "{mode}");
        assert_eq!(host.metric(metrics::LEASE_FAILURES), 1);
    }
}

#[test]
fn a_lease_that_never_answers_ends_the_wait_at_the_timeout() {
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "deny");
    send(&host, &stage, 2, "acme");
    host.enter(ROOT);
    host.advance(200);
    stage.tick();
    assert!(host.take_replies().is_empty(), "not yet");
    host.advance(60);
    stage.tick();
    let replies = host.take_replies();
    assert_eq!((replies[0].context, replies[0].status), (2, 503));
    assert_eq!(replies[0].json()["error"], "rate_limit_unavailable");
    assert_eq!(host.metric(metrics::TIMEOUTS), 1);
}

#[test]
fn two_workers_spend_one_pool_and_never_more_than_was_granted() {
    let host = FakeHost::at(1_000_000);
    let (a, b) = (start(&host, "allow"), start(&host, "allow"));
    send(&host, &a, 2, "acme");
    let (token, from, _) = leases(&host)[0].clone();
    respond(&host, &a, (token, from), &answer(LeaseMode::Leased, 6, 100));
    let mut admitted = 1; // the waiter
    for ctx in 3..30 {
        let worker = if ctx % 2 == 0 { &a } else { &b };
        if send(&host, worker, ctx, "acme").1 == Action::Continue {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 6,
        "exactly the granted tokens, across both workers"
    );
}

#[test]
fn requests_without_a_descriptor_pass_and_admitted_ones_show_the_limit() {
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "allow");
    host.enter(2);
    host.set_map(
        Map::RequestHeaders,
        [(":method", "GET"), (":path", "/api/users")],
    );
    // No x-tenant-id: that descriptor is left out, the route one remains.
    let mut r = stage.http_context(2);
    assert_eq!(r.on_request_headers(true), Action::Pause);
    let (token, from, request) = leases(&host)[0].clone();
    assert_eq!(request.descriptors.len(), 1);
    respond(
        &host,
        &stage,
        (token, from),
        &answer(LeaseMode::Leased, 5, 100),
    );
    host.enter(2);
    host.set_map(Map::ResponseHeaders, [(":status", "200")]);
    r.on_response_headers(false);
    let response = host.map_of(2, Map::ResponseHeaders);
    assert_eq!(response.get("x-ratelimit-limit"), Some("100, 100;w=60"));
    assert_eq!(
        response.get("x-ratelimit-remaining"),
        Some("11"),
        "7 in the bucket + 4 held"
    );
    host.enter(ROOT);
    stage.tick();
    assert_eq!(
        leases(&host).len(),
        1,
        "4 left of a lease of 10: a background refill"
    );
    host.enter(3);
    host.set_map(
        Map::RequestHeaders,
        [(":method", "GET"), (":path", "/other")],
    );
    assert_eq!(
        stage.http_context(3).on_request_headers(true),
        Action::Continue
    );
    assert!(leases(&host).is_empty(), "no rule: no call, no token");
}

#[test]
fn bad_configurations_name_the_field() {
    for (config, field) in [
        (json!({ "cluster": "", "domain": "edge" }), "cluster"),
        (
            json!({ "cluster": "rl", "domain": "edge", "lease_size": 0 }),
            "lease_size",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "timeout_ms": 0 }),
            "timeout_ms",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "max_pools": 15 }),
            "max_pools",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "max_pools": 2_000_000 }),
            "max_pools",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "rules": [{ "descriptors": [[]] }] }),
            "rules[0].descriptors[0]",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "rules": [{ "descriptors": [[
                { "request_headers": { "header_name": "x a", "descriptor_key": "k" } }]] }] }),
            "rules[0].descriptors[0][0].request_headers.header_name",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "limits": { "l": { "descriptors": [[]] } } }),
            "limits.l.descriptors[0]",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "limits": {},
                    "rules": [{ "descriptors": [[{ "remote_address": {} }]] }] }),
            "rules",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "limits": {}, "routes": { "orders": "standard" } }),
            "routes.orders",
        ),
        (
            json!({ "cluster": "rl", "domain": "edge", "routes": { "orders": "none" } }),
            "routes",
        ),
    ] {
        let err = RateLimitPlugin::configure(FakeHost::at(0), config.to_string().as_bytes())
            .err()
            .map(|e| e.field)
            .unwrap_or_default();
        assert_eq!(err, field, "{config}");
    }
}

#[test]
fn a_rule_can_follow_the_route_envoy_matched_by_its_name() {
    let host = FakeHost::at(1_000_000);
    let config = json!({
        "cluster": "ratelimit", "domain": "edge",
        "rules": [{ "routes": ["orders"], "descriptors": [
            [{ "route_name": { "descriptor_key": "route" } }]
        ] }]
    });
    let stage = start_with(&host, config);
    host.set_property(&["xds", "route_name"], b"users");
    assert_eq!(
        send(&host, &stage, 2, "acme").1,
        Action::Continue,
        "another route: no limit"
    );
    assert!(leases(&host).is_empty());
    host.set_property(&["xds", "route_name"], b"orders");
    assert_eq!(send(&host, &stage, 3, "acme").1, Action::Pause);
    let calls = leases(&host);
    let entry = &calls[0].2.descriptors[0].entries[0];
    assert_eq!(
        (entry.key.as_str(), entry.value.as_str()),
        ("route", "orders")
    );
}

#[test]
fn when_the_request_that_asked_ends_the_other_waiters_ask_again() {
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "allow");
    let (mut first, _) = send(&host, &stage, 2, "acme");
    let (_, action) = send(&host, &stage, 3, "acme");
    assert_eq!(action, Action::Pause);
    let calls = leases(&host);
    assert_eq!(
        calls.len(),
        1,
        "one lease per pool: request 3 waits on request 2's"
    );
    // Request 2 ends (client gone): proxy-wasm drops its call's answer with it. The new
    // lease cannot go out from request 2's callback either (the SDK would hand its answer to
    // request 2, gone): the root sends it on its next tick, hurried.
    host.enter(2);
    first.on_done();
    assert!(leases(&host).is_empty());
    assert_eq!(host.state().tick_period, Some(crate::host::SOON));
    host.enter(ROOT);
    stage.tick();
    let again = leases(&host);
    assert_eq!(
        again.len(),
        1,
        "request 3 gets a lease instead of waiting in vain"
    );
    assert_eq!(again[0].1, ROOT);
    respond(
        &host,
        &stage,
        (again[0].0, ROOT),
        &answer(LeaseMode::Leased, 4, 100),
    );
    assert_eq!(host.take_resumed(), [3]);
}

#[test]
fn the_low_water_mark_follows_the_lease_this_stage_asks_for() {
    // The service suggests leases of 1,000; the stage asks for 10 at most. Refills start at 5
    // tokens left, not at 500 (which would refill on every tick and pile tokens up).
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "allow");
    send(&host, &stage, 2, "acme");
    let (token, from, _) = leases(&host)[0].clone();
    let mut big = answer(LeaseMode::Leased, 10, 100_000);
    big.lease_size = 1_000;
    respond(&host, &stage, (token, from), &big);
    for ctx in 3..=5 {
        assert_eq!(send(&host, &stage, ctx, "acme").1, Action::Continue);
    }
    host.enter(ROOT);
    stage.tick();
    assert!(leases(&host).is_empty(), "6 tokens left: no refill yet");
    assert_eq!(send(&host, &stage, 6, "acme").1, Action::Continue);
    host.enter(ROOT);
    stage.tick();
    let refill = leases(&host);
    assert_eq!(refill.len(), 1, "5 left: half of the lease of 10");
    assert_eq!(refill[0].2.want, 10);
}

#[test]
fn the_downstream_address_is_read_only_by_a_rule_that_uses_it() {
    let host = FakeHost::at(1_000_000);
    host.set_property(&["source", "address"], b"10.0.0.7:53211");
    let stage = start(&host, "allow");
    send(&host, &stage, 2, "acme");
    assert!(
        !host
            .state()
            .property_reads
            .iter()
            .any(|p| p == "source.address"),
        "read without a remote_address action: {:?}",
        host.state().property_reads
    );
    let by_address = json!({
        "cluster": "ratelimit", "domain": "edge",
        "rules": [{ "descriptors": [[{ "remote_address": {} }]] }]
    });
    let other = FakeHost::at(1_000_000);
    other.set_property(&["source", "address"], b"10.0.0.7:53211");
    let stage = start_with(&other, by_address);
    send(&other, &stage, 2, "acme");
    let calls = leases(&other);
    let entry = &calls[0].2.descriptors[0].entries[0];
    assert_eq!(
        (entry.key.as_str(), entry.value.as_str()),
        ("remote_address", "10.0.0.7")
    );
}

#[test]
fn pools_fit_in_max_pools_slots_and_an_evicted_pool_spends_nothing_it_was_not_granted() {
    let host = FakeHost::at(1_000_000);
    let mut config: serde_json::Value = serde_json::from_str(&config("allow")).unwrap();
    config["max_pools"] = json!(16);
    let stage = start_with(&host, config);
    // 200 tenants, each granted 4 tokens once; then each sends 6 more requests. A tenant whose
    // pool kept its slot spends its 3 remaining tokens; an evicted one waits for a new lease.
    let mut ctx = 2;
    let mut admitted = 0;
    for t in 0..200 {
        let tenant = format!("tenant-{t}");
        let (_, action) = send(&host, &stage, ctx, &tenant);
        assert_eq!(action, Action::Pause);
        let (token, from, _) = leases(&host)[0].clone();
        respond(
            &host,
            &stage,
            (token, from),
            &answer(LeaseMode::Leased, 4, 1000),
        );
        admitted += host.take_resumed().len();
        host.end(ctx);
        stage.limiter.on_done(ctx);
        ctx += 1;
    }
    for t in 0..200 {
        let tenant = format!("tenant-{t}");
        for _ in 0..6 {
            let (_, action) = send(&host, &stage, ctx, &tenant);
            if action == Action::Continue {
                admitted += 1;
            }
            host.end(ctx);
            stage.limiter.on_done(ctx);
            ctx += 1;
        }
        leases(&host);
    }
    assert!(admitted <= 200 * 4, "{admitted} admitted, 800 granted");
    let keys: Vec<String> = host.state().shared.keys().cloned().collect();
    assert!(keys.iter().all(|k| k.contains(":slot:")), "{keys:?}");
    assert!(keys.len() <= 16, "{} shared-data keys", keys.len());
    assert!(host.metric(metrics::POOLS_EVICTED) > 0);
    // The 16 slots each kept one pool, whose 3 tokens were spent: 200 + 16 * 3 at least.
    assert!(admitted >= 200 + 16 * 3, "{admitted} admitted");
}

#[test]
fn an_exact_answer_resumes_its_request_and_the_root_asks_for_the_next_waiter() {
    let host = FakeHost::at(1_000_000);
    let stage = start(&host, "allow");
    send(&host, &stage, 2, "tiny");
    let (_, action) = send(&host, &stage, 3, "tiny");
    assert_eq!(action, Action::Pause);
    let first = leases(&host);
    assert_eq!(first.len(), 1);
    respond(
        &host,
        &stage,
        (first[0].0, first[0].1),
        &answer(LeaseMode::Exact, 1, 3),
    );
    assert_eq!(host.take_resumed(), [2], "the one token is request 2's");
    // Request 3 needs its own token; asked from request 2's callback, the answer would be
    // handed to request 2, which may be over by then. The root asks instead.
    assert!(leases(&host).is_empty());
    host.enter(ROOT);
    stage.tick();
    let next = leases(&host);
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].1, next[0].2.want), (ROOT, 1));
    respond(
        &host,
        &stage,
        (next[0].0, ROOT),
        &answer(LeaseMode::Exact, 1, 3),
    );
    assert_eq!(host.take_resumed(), [3]);
}

#[test]
fn a_worker_spends_a_chunk_of_a_full_pool_without_touching_shared_data() {
    let host = FakeHost::at(1_000_000);
    let mut config: serde_json::Value = serde_json::from_str(&config("allow")).unwrap();
    config["lease_size"] = json!(100);
    let (a, b) = (start_with(&host, &config), start_with(&host, &config));
    send(&host, &a, 2, "acme");
    let (token, from, _) = leases(&host)[0].clone();
    let mut grant = answer(LeaseMode::Leased, 100, 1000);
    grant.lease_size = 100;
    respond(&host, &a, (token, from), &grant);
    assert_eq!(host.take_resumed(), [2]);
    let writes = || -> u32 { host.state().shared.values().map(|(_, v)| *v).sum() };
    // 99 left after request 2. Worker a: one shared-data write takes its request's token and
    // 6 more (98 / 16).
    assert_eq!(send(&host, &a, 3, "acme").1, Action::Continue);
    let after_chunk = writes();
    for ctx in 4..=9 {
        assert_eq!(send(&host, &a, ctx, "acme").1, Action::Continue);
    }
    assert_eq!(
        writes(),
        after_chunk,
        "six requests spent the chunk locally"
    );
    // Worker b takes from the pool itself: 99 - 1 - 6 = 92 left there; it takes 1 + 91 / 16.
    assert_eq!(send(&host, &b, 10, "acme").1, Action::Continue);
    assert!(writes() > after_chunk);
    let pool = crate::slots::Slots::new("ratelimit", crate::slots::DEFAULT_SLOTS);
    let key = pool_key_of("acme");
    let left = (pool.candidates(&key).iter())
        .find_map(|slot| {
            crate::slots::read(
                host.state().shared.get(slot).map(|(v, _)| v.as_slice()),
                &key,
            )
        })
        .map(|p| p.tokens);
    assert_eq!(left, Some(92 - 1 - 5));
    a.flush();
    b.flush();
    // Every admitted request counts: request 2 (resumed), worker a's seven, worker b's one.
    assert_eq!(host.metric(metrics::ADMITTED), 9);
}

/// The pool key the stage uses for one tenant's request (as [`config`] describes it).
fn pool_key_of(tenant: &str) -> String {
    crate::descriptors::pool_key(
        "ratelimit",
        "edge",
        &[
            vec![("tenant".to_string(), tenant.to_string())],
            vec![("route".to_string(), "api".to_string())],
        ],
    )
}

/// Named limits chosen by the matched route (`edgegate.ratelimit`, or its name with a `routes`
/// map): the route's descriptors, nothing for `none` or a route naming no limit, a 500 for an
/// undefined name.
#[test]
fn the_route_chooses_the_limit() {
    let mut config = json!({
        "cluster": "ratelimit", "domain": "edge",
        "limits": {
            "per_tenant": { "descriptors": [
                [{ "request_headers": { "header_name": "x-tenant-id", "descriptor_key": "tenant" } }]
            ] }
        }
    });
    let host = FakeHost::at(0);
    let by_metadata = start_with(&host, &config);
    config["routes"] = json!({ "orders": "per_tenant", "health": "none" });
    let by_name = start_with(&host, &config);
    // Not limited: `none`, or a route naming no limit (by metadata or by name).
    let unlimited = [
        (&by_metadata, vec![("ratelimit", "none")], Some("orders")),
        (&by_metadata, vec![("jwt", "user")], Some("orders")),
        (&by_name, vec![("ratelimit", "per_tenant")], Some("health")),
        (&by_name, vec![("ratelimit", "per_tenant")], Some("other")),
    ];
    for (ctx, (stage, metadata, name)) in (2..).zip(unlimited) {
        host.set_route(&metadata, name, true);
        assert_eq!(
            send(&host, stage, ctx, "acme").1,
            Action::Continue,
            "{metadata:?} {name:?}"
        );
    }
    assert!(host.take_calls().is_empty(), "no limit, no lease");
    // Limited: the tenant's pool needs a lease before the first request goes on.
    host.set_route(&[("ratelimit", "per_tenant")], None, true);
    assert_eq!(send(&host, &by_metadata, 10, "acme").1, Action::Pause);
    host.set_route(&[], Some("orders"), true);
    assert_eq!(send(&host, &by_name, 11, "globex").1, Action::Pause);
    host.enter(ROOT);
    by_metadata.tick();
    by_name.tick();
    let tenants: Vec<String> = leases(&host)
        .into_iter()
        .map(|(_, _, l)| l.descriptors[0].entries[0].value.clone())
        .collect();
    assert!(
        tenants.contains(&"acme".to_string()) && tenants.contains(&"globex".to_string()),
        "{tenants:?}"
    );
    host.set_route(&[("ratelimit", "per_tenantt")], None, true);
    assert_eq!(send(&host, &by_metadata, 12, "acme").1, Action::Pause);
    let reply = host.take_replies().pop().unwrap();
    assert_eq!(
        (reply.status, reply.json()["error"].as_str()),
        (500, Some("policy_error"))
    );
}
