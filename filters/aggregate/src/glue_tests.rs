//! The plugin driven natively as Envoy drives it, over `FakeHost`: route binding, dispatch,
//! answers in any order, partial and failed aggregations, limits, the client leaving.

use crate::plugin::{AggregateHttp, AggregatePlugin, CACHE_HEADER, COMPLETE_HEADER};
use filter_core::host::{Level, Map};
use filter_core::testing::{Call, FakeHost};
use filter_core::{Action, HttpFilter, Plugin};
use serde_json::json;
use std::rc::Rc;
use std::time::Duration;

const CONFIG: &str = r#"{
  "endpoints": {
    "dashboard": {
      "deadline_ms": 1000,
      "max_leg_bytes": 64,
      "legs": [
        {"name": "user", "cluster": "users", "path": "/users/${header.x-user-id}", "required": true,
         "body": {"strip": ["password_hash"]}},
        {"name": "orders", "cluster": "orders", "path": "/orders?limit=${query.limit}",
         "group": "recent", "target": "items", "timeout_ms": 300},
        {"name": "stats", "cluster": "stats", "path": "/stats", "merge": true}
      ]
    }
  },
  "routes": {"dashboard-route": "dashboard"}
}"#;

fn plugin(host: &FakeHost, config: &str) -> Rc<AggregatePlugin<FakeHost>> {
    Rc::new(AggregatePlugin::configure(host.clone(), config.as_bytes()).unwrap())
}

/// A request on `route` in context 1, its headers seen by the filter.
fn request(
    host: &FakeHost,
    p: &Rc<AggregatePlugin<FakeHost>>,
    route: &str,
) -> (AggregateHttp<FakeHost>, Action) {
    host.enter(1);
    host.set_route(&[], Some(route), true);
    host.set_map(
        Map::RequestHeaders,
        [
            (":method", "GET"),
            (":path", "/api/dashboard?limit=3"),
            (":authority", "gw"),
            ("x-user-id", "u-1"),
            ("x-request-id", "r-1"),
            ("authorization", "Bearer t"),
        ],
    );
    let mut http = p.http_context(1);
    let action = http.on_request_headers(true);
    (http, action)
}

/// The answer to `call`, delivered to its context.
fn answer(
    host: &FakeHost,
    http: &mut AggregateHttp<FakeHost>,
    call: &Call,
    status: u16,
    body: &str,
) {
    host.enter(call.context);
    host.answer_http(status, body.as_bytes());
    http.on_http_call_response(call.token, body.len());
}

#[test]
fn unbound_routes_pass_untouched() {
    let host = FakeHost::at(0);
    let p = plugin(&host, CONFIG);
    let (mut http, action) = request(&host, &p, "elsewhere");
    assert_eq!(action, Action::Continue);
    assert_eq!(http.on_request_body(10, true), Action::Continue);
    assert!(host.take_calls().is_empty());
    assert!(host.take_replies().is_empty());
}

#[test]
fn legs_go_out_together_and_the_answer_merges_them() {
    let host = FakeHost::at(1_000);
    let p = plugin(&host, CONFIG);
    let (mut http, action) = request(&host, &p, "dashboard-route");
    assert_eq!(action, Action::Pause);
    assert_eq!(
        http.on_request_body(10, true),
        Action::Pause,
        "the body stays here"
    );
    let calls = host.take_calls();
    assert_eq!(calls.len(), 3, "every leg before any answer");
    assert_eq!(calls[0].cluster, "users");
    assert_eq!(calls[0].header(":path"), Some("/users/u-1"));
    assert_eq!(calls[0].header(":authority"), Some("users"));
    assert_eq!(calls[0].header("x-user-id"), Some("u-1"));
    assert_eq!(calls[0].header("x-request-id"), Some("r-1"));
    assert_eq!(calls[0].header("authorization"), None);
    assert_eq!(calls[1].header(":path"), Some("/orders?limit=3"));
    assert_eq!(calls[1].timeout, Duration::from_millis(300));
    assert_eq!(
        calls[2].timeout,
        Duration::from_millis(1000),
        "the deadline"
    );

    answer(&host, &mut http, &calls[2], 200, r#"{"views": 9}"#);
    answer(
        &host,
        &mut http,
        &calls[0],
        200,
        r#"{"id": "u-1", "password_hash": "x"}"#,
    );
    assert!(host.take_replies().is_empty(), "orders is still out");
    host.advance(40);
    answer(&host, &mut http, &calls[1], 200, r#"{"items": [1, 2]}"#);
    let replies = host.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 200);
    assert_eq!(replies[0].header(COMPLETE_HEADER), Some("true"));
    assert_eq!(replies[0].header("cache-control"), None);
    assert_eq!(
        replies[0].json(),
        json!({"user": {"id": "u-1"}, "recent": [1, 2], "views": 9})
    );
    http.on_done();
    p.flush();
    assert_eq!(host.metric("aggregate.dashboard.complete"), 1);
    assert_eq!(host.metric("aggregate.dashboard.abandoned"), 0);
    assert_eq!(host.metric("aggregate.dashboard.orders.latency_ms_sum"), 40);
    assert_eq!(host.metric("aggregate.dashboard.latency_le_50"), 1);
}

#[test]
fn a_failed_optional_leg_is_null_and_listed() {
    let host = FakeHost::at(0);
    let p = plugin(&host, CONFIG);
    let (mut http, _) = request(&host, &p, "dashboard-route");
    let calls = host.take_calls();
    answer(&host, &mut http, &calls[0], 200, r#"{"id": 1}"#);
    answer(&host, &mut http, &calls[1], 503, "no healthy upstream");
    // Larger than max_leg_bytes (64): failed before the body is read.
    answer(
        &host,
        &mut http,
        &calls[2],
        200,
        &format!("{{\"a\": \"{}\"}}", "x".repeat(64)),
    );
    let reply = &host.take_replies()[0];
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header(COMPLETE_HEADER), Some("false"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(
        reply.json(),
        json!({"user": {"id": 1}, "recent": null, "_errors": [
            {"leg": "orders", "status": 503}, {"leg": "stats", "reason": "too_large"}
        ]})
    );
    p.flush();
    assert_eq!(host.metric("aggregate.dashboard.partial"), 1);
    assert_eq!(host.metric("aggregate.leg_failures.too_large"), 1);
    assert_eq!(host.metric("aggregate.dashboard.stats.failed"), 1);
}

#[test]
fn a_failed_required_leg_answers_at_once_naming_it() {
    let host = FakeHost::at(0);
    let p = plugin(&host, CONFIG);
    let (mut http, _) = request(&host, &p, "dashboard-route");
    let calls = host.take_calls();
    answer(&host, &mut http, &calls[0], 200, "<html>");
    let reply = &host.take_replies()[0];
    assert_eq!(reply.status, 502);
    let body = reply.json();
    assert_eq!(body["error"], "bad_gateway");
    assert_eq!(body["leg"], "user");
    assert_eq!(body["reason"], "invalid_json");
    assert_eq!(body["request_id"], "r-1");
    assert!(body["message"].as_str().unwrap().contains("\"user\""));
    answer(&host, &mut http, &calls[1], 200, r#"{"items": []}"#);
    answer(&host, &mut http, &calls[2], 200, "{}");
    assert!(host.take_replies().is_empty(), "one answer only");
    p.flush();
    assert_eq!(host.metric("aggregate.dashboard.failed"), 1);
}

#[test]
fn a_required_leg_out_of_time_is_a_504() {
    let host = FakeHost::at(0);
    let p = plugin(&host, CONFIG);
    let (mut http, _) = request(&host, &p, "dashboard-route");
    let calls = host.take_calls();
    host.advance(1_000);
    // Envoy's own answer to a call past its timeout.
    answer(&host, &mut http, &calls[0], 504, "upstream request timeout");
    let reply = &host.take_replies()[0];
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["error"], "gateway_timeout");
    assert_eq!(reply.json()["reason"], "timeout");
}

#[test]
fn a_cluster_envoy_does_not_know_fails_its_leg() {
    let host = FakeHost::at(0);
    host.state_mut().refuse_calls = true;
    let p = plugin(&host, CONFIG);
    let (_http, action) = request(&host, &p, "dashboard-route");
    assert_eq!(action, Action::Pause);
    let reply = &host.take_replies()[0];
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["leg"], "user");
    assert_eq!(reply.json()["reason"], "unroutable");
    assert!(host.logs(Level::Warn)[0].contains("cannot call cluster \"users\""));
    assert!(
        host.take_calls().is_empty(),
        "no leg goes out after the request is answered"
    );
}

#[test]
fn only_optional_legs_that_cannot_go_out_still_get_an_answer() {
    let host = FakeHost::at(0);
    host.state_mut().refuse_calls = true;
    let config = r#"{"endpoints": {"e": {"legs": [{"name": "a", "cluster": "nowhere", "path": "/"}]}}, "routes": {"r": "e"}}"#;
    let p = plugin(&host, config);
    let (_http, _) = request(&host, &p, "r");
    let reply = &host.take_replies()[0];
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"a": null, "_errors": [{"leg": "a", "reason": "unroutable"}]})
    );
}

#[test]
fn metadata_binds_without_a_route_map_and_an_unknown_name_is_a_500() {
    let host = FakeHost::at(0);
    let config = r#"{"endpoints": {"e": {"legs": [{"name": "a", "cluster": "c", "path": "/"}]}}}"#;
    let p = plugin(&host, config);
    host.enter(1);
    host.set_route(&[("aggregate", "e")], None, true);
    host.set_map(Map::RequestHeaders, [(":path", "/")]);
    assert_eq!(p.http_context(1).on_request_headers(true), Action::Pause);
    assert_eq!(host.take_calls().len(), 1);
    host.set_route(&[("aggregate", "nope")], None, true);
    assert_eq!(p.http_context(1).on_request_headers(true), Action::Pause);
    assert_eq!(host.take_replies()[0].status, 500);
    host.set_route(&[("jwt", "user")], None, true);
    assert_eq!(p.http_context(1).on_request_headers(true), Action::Continue);
}

#[test]
fn a_client_that_leaves_is_counted_and_late_answers_are_dropped() {
    let host = FakeHost::at(0);
    let p = plugin(&host, CONFIG);
    let (mut http, _) = request(&host, &p, "dashboard-route");
    let calls = host.take_calls();
    http.on_done();
    host.end(1);
    p.flush();
    assert_eq!(host.metric("aggregate.dashboard.abandoned"), 1);
    // (Envoy cancels the calls of a context that ends; none answers.)
    assert_eq!(calls.len(), 3);
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let host = FakeHost::at(0);
    let e = AggregatePlugin::configure(host, br#"{"endpoints": {}}"#).unwrap_err();
    assert_eq!(e.field, "endpoints");
}

const CACHED: &str = r#"{
  "endpoints": {
    "dash": {
      "cache": {"ttl_ms": 5000},
      "legs": [
        {"name": "user", "cluster": "users", "path": "/users/${header.x-user-id}"},
        {"name": "feed", "cluster": "feed", "path": "/feed"}
      ]
    }
  },
  "routes": {"dash-route": "dash"}
}"#;

/// A request of `user` on the cached endpoint (context `ctx`), with extra headers.
fn cached_request(
    host: &FakeHost,
    p: &Rc<AggregatePlugin<FakeHost>>,
    ctx: u32,
    user: &str,
    extra: &[(&str, &str)],
) -> (AggregateHttp<FakeHost>, Action) {
    host.enter(ctx);
    host.set_route(&[], Some("dash-route"), true);
    let mut headers = filter_core::HeaderMap::from([
        (":method", "GET"),
        (":path", "/dash"),
        ("x-user-id", user),
        ("x-request-id", "r"),
    ]);
    for (n, v) in extra {
        headers.append(n, v);
    }
    host.set_map(Map::RequestHeaders, headers);
    let mut http = p.http_context(ctx);
    let action = http.on_request_headers(true);
    (http, action)
}

/// Sends a request of `user` and answers its legs: the reply.
fn aggregate_once(
    host: &FakeHost,
    p: &Rc<AggregatePlugin<FakeHost>>,
    ctx: u32,
    user: &str,
    feed_status: u16,
) -> filter_core::testing::Reply {
    let (mut http, _) = cached_request(host, p, ctx, user, &[]);
    let calls = host.take_calls();
    assert_eq!(calls.len(), 2, "a miss calls every leg");
    let user_body = format!(r#"{{"id": "{user}"}}"#);
    answer(host, &mut http, &calls[0], 200, &user_body);
    answer(host, &mut http, &calls[1], feed_status, r#"{"n": 1}"#);
    host.take_replies().pop().unwrap()
}

#[test]
fn a_complete_answer_is_served_from_the_cache_to_the_same_calls_only() {
    let host = FakeHost::at(1_000_000);
    let p = plugin(&host, CACHED);
    let first = aggregate_once(&host, &p, 1, "ann", 200);
    assert_eq!(first.header(CACHE_HEADER), Some("miss"));

    host.advance(2_500);
    let (_, action) = cached_request(&host, &p, 2, "ann", &[]);
    assert_eq!(action, Action::Pause);
    assert!(host.take_calls().is_empty(), "a hit calls no leg");
    let hit = host.take_replies().pop().unwrap();
    assert_eq!(hit.status, 200);
    assert_eq!(hit.json(), first.json());
    assert_eq!(hit.header(CACHE_HEADER), Some("hit"));
    assert_eq!(hit.header("age"), Some("2"));
    assert_eq!(hit.header(COMPLETE_HEADER), Some("true"));

    // Another user's legs differ (x-user-id goes to them): never ann's answer.
    let bob = aggregate_once(&host, &p, 3, "bob", 200);
    assert_eq!(bob.json()["user"]["id"], "bob");
    // Asking for a fresh answer, or after the TTL: the legs again.
    let (_, _) = cached_request(&host, &p, 4, "ann", &[("cache-control", "no-cache")]);
    assert_eq!(host.take_calls().len(), 2);
    host.advance(2_500);
    assert_eq!(
        aggregate_once(&host, &p, 5, "ann", 200).header(CACHE_HEADER),
        Some("miss")
    );
    p.flush();
    assert_eq!(host.metric("aggregate.dash.cache_hits"), 1);
    assert_eq!(host.metric("aggregate.dash.cache_misses"), 3);
}

#[test]
fn a_partial_answer_is_never_kept() {
    let host = FakeHost::at(0);
    let p = plugin(&host, CACHED);
    let partial = aggregate_once(&host, &p, 1, "ann", 503);
    assert_eq!(partial.header(COMPLETE_HEADER), Some("false"));
    assert_eq!(partial.header("cache-control"), Some("no-store"));
    let again = aggregate_once(&host, &p, 2, "ann", 200);
    assert_eq!(again.header(CACHE_HEADER), Some("miss"), "the legs again");
}
