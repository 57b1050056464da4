//! The plugin driven as Envoy drives it (configure, one HTTP context per request, the callbacks
//! in order, body sizes counting everything buffered so far) over the recording fake host; each
//! test asserts what reached the host: header maps, body buffers, local replies, resets,
//! counters and logs.

use crate::metrics;
use crate::plugin::{TransformHttp, TransformPlugin};
use filter_core::host::{Buffer, Level, Map};
use filter_core::testing::FakeHost;
use filter_core::{Action, HttpFilter, Plugin};
use std::rc::Rc;

const CTX: u32 = 1;

/// Strips `password` from request bodies and `secret` from response bodies of `/api`.
fn strip_config(extra_top: &str, extra_response_body: &str) -> String {
    format!(
        r#"{{ {extra_top}
  "rules": [{{
    "name": "api",
    "match": {{"path_prefix": "/api"}},
    "request": {{"body": {{"strip": ["password"]}}}},
    "response": {{"body": {{"strip": ["secret"] {extra_response_body}}}}}
  }}]
}}"#
    )
}

fn configure(config: &str) -> (FakeHost, Rc<TransformPlugin<FakeHost>>) {
    let host = FakeHost::at(1_000);
    let plugin = match TransformPlugin::configure(host.clone(), config.as_bytes()) {
        Ok(p) => Rc::new(p),
        Err(e) => panic!("config refused: {e}"),
    };
    (host, plugin)
}

/// A new request on `CTX` whose request headers (`:method GET :path <path>` plus `extra`) went
/// through the filter.
fn request(
    host: &FakeHost,
    plugin: &Rc<TransformPlugin<FakeHost>>,
    path: &str,
    extra: &[(&str, &str)],
    end_of_stream: bool,
) -> TransformHttp<FakeHost> {
    host.enter(CTX);
    let mut pairs = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "api.example".to_string()),
    ];
    pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    host.set_map(Map::RequestHeaders, pairs);
    let mut http = plugin.http_context(CTX);
    assert_eq!(http.on_request_headers(end_of_stream), Action::Continue);
    http
}

/// The response headers of the request arrive: `:status 200` plus `extra`.
fn respond(host: &FakeHost, http: &mut TransformHttp<FakeHost>, extra: &[(&str, &str)]) -> Action {
    let mut pairs = vec![(":status".to_string(), "200".to_string())];
    pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    host.set_map(Map::ResponseHeaders, pairs);
    http.on_response_headers(false)
}

/// The response body arrives in `chunks`; returns the action of each body callback. Envoy keeps
/// every paused chunk in its buffer, so each callback sees all bytes so far.
fn response_body(
    host: &FakeHost,
    http: &mut TransformHttp<FakeHost>,
    chunks: &[&str],
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut buffered = host.buffer_of(CTX, Buffer::ResponseBody);
        buffered.extend_from_slice(chunk.as_bytes());
        let size = buffered.len();
        host.set_buffer_of(Buffer::ResponseBody, buffered);
        actions.push(http.on_response_body(size, i + 1 == chunks.len()));
    }
    actions
}

fn response_buffer(host: &FakeHost) -> String {
    String::from_utf8_lossy(&host.buffer_of(CTX, Buffer::ResponseBody)).into_owned()
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn request_header_rules_are_written_to_the_host() {
    let (host, plugin) = configure(
        r#"{"rules": [{"match": {"path_prefix": "/api"},
            "request": {"headers": {"remove": ["x-internal"], "set": {"x-route": "api-${method}"}},
                        "query": {"remove": ["debug"]}},
            "response": {"headers": {"remove": ["server"], "add": {"x-gateway": "edge"}}}}]}"#,
    );
    let mut http = request(
        &host,
        &plugin,
        "/api/a?debug=1&x=2",
        &[("x-internal", "1")],
        true,
    );
    let sent = host.map_of(CTX, Map::RequestHeaders);
    assert_eq!(sent.get("x-internal"), None);
    assert_eq!(sent.get("x-route"), Some("api-GET"));
    assert_eq!(sent.get(":path"), Some("/api/a?x=2"));
    assert_eq!(
        respond(&host, &mut http, &[("server", "upstream")]),
        Action::Continue
    );
    let back = host.map_of(CTX, Map::ResponseHeaders);
    assert_eq!(
        (back.get("server"), back.get("x-gateway")),
        (None, Some("edge"))
    );
    // A request no rule matches is left alone.
    let mut other = request(&host, &plugin, "/other", &[("x-internal", "1")], true);
    assert_eq!(
        host.map_of(CTX, Map::RequestHeaders).get("x-internal"),
        Some("1")
    );
    assert_eq!(
        respond(&host, &mut other, &[("server", "upstream")]),
        Action::Continue
    );
    assert_eq!(
        host.map_of(CTX, Map::ResponseHeaders).get("server"),
        Some("upstream")
    );
}

#[test]
fn a_request_body_is_buffered_to_its_end_then_rewritten() {
    let (host, plugin) = configure(&strip_config("", ""));
    let body = r#"{"user":"ann","password":"hunter2"}"#;
    let length = body.len().to_string();
    let mut http = request(
        &host,
        &plugin,
        "/api/login",
        &[JSON, ("content-length", length.as_str())],
        false,
    );
    assert_eq!(
        host.map_of(CTX, Map::RequestHeaders).get("content-length"),
        None
    );
    let (first, rest) = body.split_at(10);
    host.set_buffer_of(Buffer::RequestBody, first);
    assert_eq!(http.on_request_body(first.len(), false), Action::Pause);
    host.set_buffer_of(Buffer::RequestBody, body);
    assert_eq!(
        http.on_request_body(first.len() + rest.len(), true),
        Action::Continue
    );
    assert_eq!(
        host.buffer_of(CTX, Buffer::RequestBody),
        br#"{"user":"ann"}"#
    );
    assert_eq!(host.metric(metrics::BODIES_REWRITTEN), 1);
}

#[test]
fn hold_mode_holds_the_response_headers_until_the_body_is_rewritten() {
    let (host, plugin) = configure(&strip_config("", ""));
    let mut http = request(&host, &plugin, "/api/me", &[], true);
    assert_eq!(
        respond(&host, &mut http, &[JSON, ("content-length", "31")]),
        Action::Pause
    );
    assert_eq!(
        host.map_of(CTX, Map::ResponseHeaders).get("content-length"),
        None
    );
    let actions = response_body(&host, &mut http, &[r#"{"id":7,"#, r#""secret":"s3cr3t"}"#]);
    assert_eq!(actions, [Action::Pause, Action::Continue]);
    assert_eq!(response_buffer(&host), r#"{"id":7}"#);
    assert!(host.take_replies().is_empty());
    assert_eq!(host.metric(metrics::BODIES_REWRITTEN), 1);
}

/// A refusal reason, the response headers, the response body chunks.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

/// Hold mode: each unprocessable response becomes the 502 local reply, counted and logged.
#[test]
fn hold_mode_replaces_an_unprocessable_response_with_a_502() {
    let cases: [Case<'_>; 4] = [
        ("invalid_json", &[JSON], &[r#"{"secret": "#, "oops"]),
        (
            "not_json",
            &[("content-type", "text/html")],
            &["<html>secret</html>"],
        ),
        (
            "oversize",
            &[JSON],
            &[r#"{"a":"0123456789"#, r#"0123456789","secret":1}"#],
        ),
        ("oversize", &[JSON, ("content-length", "500")], &["{}"]),
    ];
    for (reason, headers, chunks) in cases {
        let (host, plugin) = configure(&strip_config(r#""max_body_bytes": 24,"#, ""));
        let mut http = request(
            &host,
            &plugin,
            "/api/me",
            &[("x-request-id", "req-7")],
            true,
        );
        assert_eq!(
            respond(&host, &mut http, headers),
            Action::Pause,
            "{reason}"
        );
        let actions = response_body(&host, &mut http, chunks);
        assert_eq!(
            actions.last(),
            Some(&Action::Pause),
            "{reason}: nothing goes on"
        );
        let replies = host.take_replies();
        assert_eq!(replies.len(), 1, "{reason}");
        assert_eq!(replies[0].status, 502);
        assert_eq!(replies[0].header("content-type"), Some("application/json"));
        assert_eq!(
            replies[0].json(),
            serde_json::json!({"error": "bad_gateway",
                "message": "the upstream response could not be processed", "request_id": "req-7"})
        );
        assert_eq!(host.metric(&metrics::bodies_refused(reason)), 1, "{reason}");
        let logs = host.logs(Level::Warn);
        assert!(
            logs.iter()
                .any(|l| l
                    .starts_with("transform: rule \"api\": upstream response replaced by a 502")),
            "{reason}: {logs:?}"
        );
        assert!(
            logs.iter().all(|l| !l.contains("secret")),
            "no body content in logs"
        );
    }
}

#[test]
fn on_unprocessable_pass_forwards_the_body_untouched() {
    let config = strip_config("", r#", "on_unprocessable": "pass""#);
    let (host, plugin) = configure(&config);
    let mut http = request(&host, &plugin, "/api/me", &[], true);
    assert_eq!(respond(&host, &mut http, &[JSON]), Action::Pause);
    let actions = response_body(&host, &mut http, &[r#"{"secret": oops"#]);
    assert_eq!(actions, [Action::Continue]);
    assert_eq!(response_buffer(&host), r#"{"secret": oops"#);
    assert!(host.take_replies().is_empty());
    assert_eq!(host.metric(&metrics::bodies_skipped("invalid_json")), 1);
    assert_eq!(host.metric(&metrics::bodies_refused("invalid_json")), 0);
    // Not JSON: known from the headers, which are then not held at all.
    let mut http = request(&host, &plugin, "/api/page", &[], true);
    assert_eq!(
        respond(&host, &mut http, &[("content-type", "text/html")]),
        Action::Continue
    );
    assert_eq!(host.metric(&metrics::bodies_skipped("not_json")), 1);
}

#[test]
fn stream_mode_replaces_a_body_refused_after_the_headers_left() {
    let (host, plugin) = configure(&strip_config(r#""response_headers_mode": "stream","#, ""));
    let mut http = request(
        &host,
        &plugin,
        "/api/me",
        &[("x-request-id", "req-9")],
        true,
    );
    assert_eq!(
        respond(&host, &mut http, &[JSON]),
        Action::Continue,
        "never held"
    );
    let actions = response_body(&host, &mut http, &[r#"{"secret":"#, r#" oops"#]);
    assert_eq!(actions, [Action::Pause, Action::Continue]);
    let body: serde_json::Value = match serde_json::from_str(&response_buffer(&host)) {
        Ok(v) => v,
        Err(e) => panic!("the error body is JSON: {e}"),
    };
    assert_eq!(body["error"], "bad_gateway");
    assert_eq!(body["request_id"], "req-9");
    assert!(
        host.take_replies().is_empty(),
        "no local reply: the headers are gone"
    );
    assert_eq!(
        host.map_of(CTX, Map::ResponseHeaders).get(":status"),
        Some("200")
    );
    assert_eq!(host.metric(&metrics::bodies_refused("invalid_json")), 1);
    assert!(host.state().resets.is_empty());
}

#[test]
fn stream_mode_turns_headers_showing_an_unprocessable_body_into_the_502s() {
    let (host, plugin) = configure(&strip_config(r#""response_headers_mode": "stream","#, ""));
    let mut http = request(&host, &plugin, "/api/me", &[], true);
    let headers = [("content-type", "text/html"), ("set-cookie", "a=1")];
    assert_eq!(respond(&host, &mut http, &headers), Action::Continue);
    let sent = host.map_of(CTX, Map::ResponseHeaders);
    assert_eq!(sent.get(":status"), Some("502"));
    assert_eq!(sent.get("content-type"), Some("application/json"));
    assert_eq!(sent.get("set-cookie"), None);
    assert_eq!(
        response_body(&host, &mut http, &["<p>secret</p>"]),
        [Action::Continue]
    );
    assert!(response_buffer(&host).contains("bad_gateway"));
    assert_eq!(host.metric(&metrics::bodies_refused("not_json")), 1);
}

#[test]
fn stream_mode_resets_the_stream_when_the_body_cannot_be_replaced() {
    let (host, plugin) = configure(&strip_config(r#""response_headers_mode": "stream","#, ""));
    let mut http = request(&host, &plugin, "/api/me", &[], true);
    assert_eq!(respond(&host, &mut http, &[JSON]), Action::Continue);
    host.state_mut().refuse_buffer_writes = true;
    assert_eq!(
        response_body(&host, &mut http, &[r#"{"secret": oops"#]),
        [Action::Pause]
    );
    assert_eq!(host.state().resets, [CTX]);
    assert_eq!(
        response_buffer(&host),
        r#"{"secret": oops"#,
        "not rewritten, not sent"
    );
    let logs = host.logs(Level::Warn);
    assert!(
        logs.iter()
            .any(|l| l == "transform: the response body could not be replaced: stream reset"),
        "{logs:?}"
    );
}

#[test]
fn trailers_after_a_buffered_body() {
    let (host, plugin) = configure(&strip_config("", ""));
    let mut http = request(&host, &plugin, "/api/up", &[JSON], false);
    host.set_buffer_of(Buffer::RequestBody, r#"{"password":"x"}"#);
    assert_eq!(http.on_request_body(16, false), Action::Pause);
    // A request body followed by trailers is forwarded as it is.
    assert_eq!(http.on_request_trailers(), Action::Continue);
    assert_eq!(host.metric(&metrics::bodies_skipped("trailers")), 1);
    assert_eq!(respond(&host, &mut http, &[JSON]), Action::Pause);
    host.set_buffer_of(Buffer::ResponseBody, r#"{"secret":1}"#);
    assert_eq!(http.on_response_body(12, false), Action::Pause);
    // A response body followed by trailers cannot be rewritten: refused.
    assert_eq!(http.on_response_trailers(), Action::Pause);
    let replies = host.take_replies();
    assert_eq!(replies.iter().map(|r| r.status).collect::<Vec<_>>(), [502]);
    assert_eq!(host.metric(&metrics::bodies_refused("trailers")), 1);
}

#[test]
fn batched_counters_reach_the_host_on_flush_only() {
    let (host, plugin) = configure(
        r#"{"rules": [{"match": {"path_prefix": "/api"}, "request": {"headers": {"set": {"x-a": "1"}}}}]}"#,
    );
    for _ in 0..3 {
        request(&host, &plugin, "/api/x", &[], true);
    }
    request(&host, &plugin, "/other", &[], true);
    assert_eq!(host.metric(metrics::RULES_MATCHED), 0);
    assert_eq!(host.metric(metrics::HEADERS_REWRITTEN), 0);
    plugin.flush();
    assert_eq!(host.metric(metrics::RULES_MATCHED), 3);
    assert_eq!(host.metric(metrics::HEADERS_REWRITTEN), 3);
    plugin.flush();
    assert_eq!(
        host.metric(metrics::RULES_MATCHED),
        3,
        "a flush sends each count once"
    );
}

#[test]
fn a_refused_configuration_names_the_field() {
    let refused =
        |config: &str| match TransformPlugin::configure(FakeHost::at(0), config.as_bytes()) {
            Ok(_) => panic!("accepted: {config}"),
            Err(e) => e,
        };
    let e = refused(r#"{"max_body_bytes": 0}"#);
    assert_eq!(e.field, "max_body_bytes");
    assert!(e.reason.contains("between 1 and"), "{e}");
    let e = refused(r#"{"rules": [{"request": {"body": {"strip": ["items[*]"]}}}]}"#);
    assert_eq!(e.field, "rules[0].request.body.strip[0]");
    let e = refused(r#"{"rules": [{"respons": {}}]}"#);
    assert!(e.field.starts_with("rules[0]"), "{e}");
    assert!(e.to_string().contains("respons"), "{e}");
}

/// Named rules chosen by the matched route (`edgegate.transform`): the route's rule, `default`
/// on a route that names none, nothing on `none`, a 500 on an undefined name.
#[test]
fn the_route_chooses_the_rule_and_an_undefined_one_is_refused() {
    let config = r#"{
      "transform_rules": {
        "users": {"request": {"headers": {"set": {"x-gateway-route": "users"}}}}
      },
      "default": {"request": {"headers": {"set": {"x-gateway-route": "default"}}}}
    }"#;
    let (host, plugin) = configure(config);
    let route_header = |host: &FakeHost| {
        (host.map_of(CTX, Map::RequestHeaders).get("x-gateway-route")).map(str::to_string)
    };
    // The path says nothing: only the route decides.
    for (metadata, name, expect) in [
        (vec![("transform", "users")], None, Some("users")),
        (vec![], Some("people"), Some("default")),
        (vec![("transform", "none")], Some("people"), None),
    ] {
        host.set_route(&metadata, name, true);
        request(&host, &plugin, "/anything", &[], true);
        assert_eq!(
            route_header(&host).as_deref(),
            expect,
            "{metadata:?} {name:?}"
        );
    }
    host.set_route(&[("transform", "userz")], None, true);
    host.enter(CTX);
    host.set_map(Map::RequestHeaders, [(":method", "GET"), (":path", "/a")]);
    let mut http = plugin.http_context(CTX);
    assert_eq!(http.on_request_headers(true), Action::Pause);
    let reply = host.take_replies().pop().unwrap();
    assert_eq!(
        (reply.status, reply.json()["error"].as_str()),
        (500, Some("policy_error"))
    );
    assert!(host
        .logs(Level::Warn)
        .iter()
        .any(|l| l.contains("\"userz\"")));
}
