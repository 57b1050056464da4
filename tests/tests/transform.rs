//! The transform filter (dist/transform.wasm) in a real Envoy in front of a scripted upstream.

use bytes::Bytes;
use gateway_tests::chain;
use gateway_tests::envoy::{client, custom, single_upstream, Envoy};
use gateway_tests::tools;
use gateway_tests::upstream::{Reply, Upstream};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// The transform filter as a deployment must configure it: `allow_on_headers_stop_iteration`
/// lets the filter hold response headers while a response body may yet be refused (without it
/// Envoy turns the pause into StopAllIterationAndWatermark and those responses stall).
fn transform_filter(config: &Value) -> Value {
    let mut filter = chain::wasm("transform", config).unwrap();
    filter["typed_config"]["config"]["allow_on_headers_stop_iteration"] = json!(true);
    filter
}

async fn envoy_with(config: &Value, up: &Upstream) -> Envoy {
    single_upstream("transform", vec![transform_filter(config)], up.port())
        .unwrap()
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn request_header_operations() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({ "rules": [{
        "match": { "path_prefix": "/h" },
        "request": { "headers": {
            "remove": ["x-internal"],
            "rename": { "x-old": "x-new" },
            "set": { "x-route": "h-${method}", "x-copied": "${header.x-source}", "x-page": "${query.page}", "x-path": "${path}" },
            "add": { "x-added": "default", "x-kept": "default" },
            "append": { "x-multi": "from-gateway" }
        }}
    }]});
    let envoy = envoy_with(&config, &up).await;
    let resp = client()
        .get(envoy.url("main", "/h/items?page=3"))
        .header("x-internal", "secret")
        .header("x-old", "legacy")
        .header("x-new", "overwritten-by-rename")
        .header("x-route", "client-value")
        .header("x-source", "abc")
        .header("x-kept", "client")
        .header("x-multi", "from-client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.last();
    assert_eq!(got.header("x-internal"), None, "removed");
    assert_eq!(got.header("x-old"), None, "renamed away");
    assert_eq!(
        got.header_all("x-new"),
        ["legacy"],
        "renamed, replacing the old x-new"
    );
    assert_eq!(
        got.header_all("x-route"),
        ["h-GET"],
        "set replaces the client value"
    );
    assert_eq!(got.header("x-copied").as_deref(), Some("abc"));
    assert_eq!(got.header("x-page").as_deref(), Some("3"));
    assert_eq!(got.header("x-path").as_deref(), Some("/h/items"));
    assert_eq!(
        got.header("x-added").as_deref(),
        Some("default"),
        "add when absent"
    );
    assert_eq!(got.header_all("x-kept"), ["client"], "add never overrides");
    let multi: Vec<String> = got
        .header_all("x-multi")
        .iter()
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(multi, ["from-client", "from-gateway"], "append keeps both");
    assert_eq!(
        envoy
            .wait_stat_at_least(&custom(transform::metrics::RULES_MATCHED), 1)
            .await
            .unwrap(),
        1
    );
    assert!(
        envoy
            .stat(&custom(transform::metrics::HEADERS_REWRITTEN))
            .await
            .unwrap()
            .unwrap_or(0)
            >= 1
    );
}

#[tokio::test]
async fn query_operations_keep_untouched_parameters_verbatim() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({ "rules": [{ "request": { "query": {
        "remove": ["debug"],
        "set": { "page": "1" },
        "add": { "source": "gw ${method}", "keep": "never" }
    }}}]});
    let envoy = envoy_with(&config, &up).await;
    let resp = client()
        .get(envoy.url(
            "main",
            "/q?debug=1&keep=a%2Fb&page=7&page=8&debug=2&x=%C3%A9",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let path = up.last().path;
    let (p, q) = path.split_once('?').unwrap();
    assert_eq!(p, "/q");
    let params: Vec<&str> = q.split('&').collect();
    assert!(!q.contains("debug"), "{path}");
    assert!(
        params.contains(&"keep=a%2Fb"),
        "untouched bytes kept: {path}"
    );
    assert!(params.contains(&"x=%C3%A9"), "{path}");
    assert_eq!(
        params
            .iter()
            .filter(|p| p.starts_with("page="))
            .collect::<Vec<_>>(),
        [&"page=1"],
        "{path}"
    );
    let source: Vec<&&str> = params.iter().filter(|p| p.starts_with("source=")).collect();
    assert_eq!(source.len(), 1, "{path}");
    assert!(
        source[0] == &"source=gw+GET" || source[0] == &"source=gw%20GET",
        "{path}"
    );
}

#[tokio::test]
async fn response_header_operations() {
    let up = Upstream::start(|_| {
        Reply::text(200, "hi")
            .header("x-powered-by", "php/5")
            .header("x-upstream-old", "v")
            .header("x-replace", "upstream")
    })
    .await
    .unwrap();
    let config = json!({ "rules": [{ "response": { "headers": {
        "remove": ["x-powered-by"],
        "rename": { "x-upstream-old": "x-upstream-new" },
        "set": { "x-replace": "gateway", "x-req-path": "${path}" },
        "add": { "x-frame-options": "DENY" },
        "append": { "x-replace": "also" }
    }}}]});
    let envoy = envoy_with(&config, &up).await;
    let resp = client()
        .get(envoy.url("main", "/r/1"))
        .send()
        .await
        .unwrap();
    let h = resp.headers();
    assert!(h.get("x-powered-by").is_none());
    assert!(h.get("x-upstream-old").is_none());
    assert_eq!(h["x-upstream-new"], "v");
    let replace: Vec<_> = h
        .get_all("x-replace")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(replace, ["gateway", "also"]);
    assert_eq!(
        h["x-req-path"], "/r/1",
        "response templates see the request"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(resp.text().await.unwrap(), "hi");
}

fn order_doc() -> Value {
    json!({
        "id": 7,
        "debug_info": { "host": "db-1" },
        "user": { "name": "Ada", "ssn": "078-05-1120", "fullName": "Ada L." },
        "items": [ { "sku": "a", "internal_id": 1 }, { "sku": "b", "internal_id": 2 } ],
        "note": "keep"
    })
}

fn strip_rule() -> Value {
    json!({ "rules": [{ "match": { "path_prefix": "/orders" }, "response": { "body": {
        "strip": ["debug_info", "user.ssn", "items[*].internal_id"],
        "rename": { "user.fullName": "display_name" },
        "add": { "api_version": "v1" }
    }}}]})
}

fn expected_stripped() -> Value {
    json!({
        "id": 7,
        "user": { "name": "Ada", "display_name": "Ada L." },
        "items": [ { "sku": "a" }, { "sku": "b" } ],
        "note": "keep",
        "api_version": "v1"
    })
}

#[tokio::test]
async fn json_response_fields_stripped_with_correct_content_length() {
    let up = Upstream::start(|_| Reply::json(200, &order_doc()))
        .await
        .unwrap();
    let envoy = envoy_with(&strip_rule(), &up).await;
    let resp = client()
        .get(envoy.url("main", "/orders/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let declared = resp
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
    let body = resp.bytes().await.unwrap();
    if let Some(len) = declared {
        assert_eq!(len, body.len(), "content-length matches the rewritten body");
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, expected_stripped());
    envoy
        .wait_stat_at_least(&custom(transform::metrics::BODIES_REWRITTEN), 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn chunked_upstream_response_is_rewritten() {
    let doc = order_doc().to_string();
    let up = Upstream::start(move |_| {
        let b = doc.as_bytes();
        let chunks = vec![
            Bytes::copy_from_slice(&b[..10]),
            Bytes::copy_from_slice(&b[10..40]),
            Bytes::copy_from_slice(&b[40..]),
        ];
        Reply::new(200)
            .header("content-type", "application/json; charset=utf-8")
            .chunked(chunks)
    })
    .await
    .unwrap();
    let envoy = envoy_with(&strip_rule(), &up).await;
    let resp = client()
        .get(envoy.url("main", "/orders/7"))
        .send()
        .await
        .unwrap();
    let declared = resp
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
    let body = resp.bytes().await.unwrap();
    if let Some(len) = declared {
        assert_eq!(len, body.len());
    }
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        expected_stripped()
    );
}

/// The value `strip_rule` removes (`user.ssn`): it must never reach a client.
const SECRET: &str = "078-05-1120";

/// Bodies transform cannot rewrite, each carrying `SECRET`, on the strip rule's `/orders` route
/// (`max_body_bytes` 2048 in the tests below), plus empty bodies that may pass.
struct Unprocessable {
    gzipped: Bytes,
    big: String,
    invalid: String,
    text: String,
}

impl Unprocessable {
    fn new() -> Self {
        let doc = order_doc().to_string();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(doc.as_bytes()).unwrap();
        let mut big = order_doc();
        big["padding"] = Value::String("x".repeat(4096));
        Unprocessable {
            gzipped: Bytes::from(gz.finish().unwrap()),
            big: big.to_string(),
            invalid: format!("{{\"user\": {{\"ssn\": \"{SECRET}\"}},"),
            text: doc,
        }
    }

    async fn upstream(&self) -> Upstream {
        let (gz, big, invalid, text) = (
            self.gzipped.clone(),
            self.big.clone(),
            self.invalid.clone(),
            self.text.clone(),
        );
        Upstream::start(move |r| match r.path.as_str() {
            // Sent whatever the request's accept-encoding says.
            "/orders/gzip" => Reply::new(200)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(gz.clone()),
            "/orders/big" => Reply::new(200)
                .header("content-type", "application/json")
                .body(big.clone()),
            "/orders/big-chunked" => {
                let b = Bytes::from(big.clone());
                Reply::new(200)
                    .header("content-type", "application/json")
                    .chunked(vec![b.slice(..2000), b.slice(2000..)])
            }
            "/orders/invalid" => Reply::new(200)
                .header("content-type", "application/json")
                .body(invalid.clone()),
            "/orders/empty-text" => Reply::new(200).header("content-type", "text/plain"),
            // Bodies transform can rewrite, for the stream-mode test.
            "/orders/json" => Reply::json(200, &order_doc()),
            "/orders/json-chunked" => {
                let b = Bytes::from(text.clone());
                Reply::new(200)
                    .header("content-type", "application/json")
                    .chunked(vec![b.slice(..25), b.slice(25..)])
            }
            "/orders/no-content" => Reply::new(204).header("content-encoding", "gzip"),
            _ => Reply::new(200)
                .header("content-type", "text/plain")
                .body(text.clone()),
        })
        .await
        .unwrap()
    }
}

/// A client that leaves bodies as sent (no decompression): we compare raw bytes.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .build()
        .unwrap()
}

/// The response is transform's 502: JSON in the gateway's error shape, nothing of the upstream.
async fn assert_refused(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 502, "{what}");
    assert_error_body(resp, what).await;
}

/// The response's body is transform's JSON error (whatever the status), nothing of the upstream.
async fn assert_error_body(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.headers()["content-type"], "application/json", "{what}");
    assert!(resp.headers().get("content-encoding").is_none(), "{what}");
    let bytes = resp.bytes().await.unwrap();
    let body = String::from_utf8_lossy(&bytes);
    assert!(!body.contains(SECRET), "{what}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert_eq!(v["error"], "bad_gateway", "{what}: {body}");
    assert_eq!(
        v["message"], "the upstream response could not be processed",
        "{what}: {body}"
    );
    assert!(
        v["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{what}: {body}"
    );
    assert_eq!(v.as_object().unwrap().len(), 3, "{what}: {body}");
}

#[tokio::test]
async fn unprocessable_bodies_on_a_strip_route_are_refused_with_502() {
    let bodies = Unprocessable::new();
    let up = bodies.upstream().await;
    let mut config = strip_rule();
    config["max_body_bytes"] = json!(2048);
    let envoy = envoy_with(&config, &up).await;
    let c = raw_client();
    let get = |p: &str| c.get(envoy.url("main", p)).send();

    for (path, what) in [
        ("/orders/gzip", "gzip-encoded JSON"),
        ("/orders/invalid", "invalid JSON"),
        ("/orders/big", "over max_body_bytes by content-length"),
        ("/orders/big-chunked", "over max_body_bytes while buffering"),
        ("/orders/text", "not JSON"),
    ] {
        assert_refused(get(path).await.unwrap(), what).await;
    }
    // Nothing to strip in an empty body: it passes, as does a 204.
    let empty = get("/orders/empty-text").await.unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.bytes().await.unwrap().len(), 0);
    assert_eq!(get("/orders/no-content").await.unwrap().status(), 204);

    for (reason, n) in [
        ("encoded", 1),
        ("invalid_json", 1),
        ("oversize", 2),
        ("not_json", 1),
    ] {
        let name = custom(&transform::metrics::bodies_refused(reason));
        envoy.wait_stat_at_least(&name, n).await.unwrap();
    }
    assert_eq!(
        envoy
            .stat(&custom(transform::metrics::BODIES_REWRITTEN))
            .await
            .unwrap()
            .unwrap_or(0),
        0
    );
    // The reason is logged, the body is not.
    let log = envoy
        .wait_log("upstream response replaced by a 502: the body is not valid JSON")
        .await
        .unwrap();
    assert!(
        log.contains("replaced by a 502: the body is content-encoded"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// Envoy's own replies pass the filter too: a non-JSON one on a strip route (here the 503 for
/// an upstream that refuses connections) is refused like an upstream's, and the 502 replacing a
/// local reply does not upset Envoy or the VM. (envoy/gateway.yaml maps its replies to JSON.)
#[tokio::test]
async fn envoys_own_non_json_replies_on_a_strip_route_fail_closed_too() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let envoy = single_upstream("transform", vec![transform_filter(&strip_rule())], port)
        .unwrap()
        .start()
        .await
        .unwrap();
    for _ in 0..2 {
        let resp = raw_client()
            .get(envoy.url("main", "/orders/1"))
            .send()
            .await
            .unwrap();
        assert_refused(resp, "Envoy's 503").await;
    }
    // Without a body rule Envoy's reply is left alone.
    let other = raw_client()
        .get(envoy.url("main", "/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 503);
    envoy
        .wait_stat_at_least(&custom(&transform::metrics::bodies_refused("not_json")), 2)
        .await
        .unwrap();
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}

#[tokio::test]
async fn on_unprocessable_pass_forwards_bodies_untouched() {
    let bodies = Unprocessable::new();
    let up = bodies.upstream().await;
    let mut config = strip_rule();
    config["max_body_bytes"] = json!(2048);
    config["rules"][0]["response"]["body"]["on_unprocessable"] = json!("pass");
    let envoy = envoy_with(&config, &up).await;
    let c = raw_client();
    let get = |p: &str| c.get(envoy.url("main", p)).send();

    let r = get("/orders/gzip").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(
        r.bytes().await.unwrap(),
        bodies.gzipped,
        "gzip body untouched"
    );
    for (path, body, what) in [
        ("/orders/big", &bodies.big, "oversize (content-length)"),
        ("/orders/big-chunked", &bodies.big, "oversize (chunked)"),
        ("/orders/invalid", &bodies.invalid, "invalid JSON"),
        ("/orders/text", &bodies.text, "not JSON"),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(&r.text().await.unwrap(), body, "{what} untouched");
    }

    for (reason, n) in [
        ("encoded", 1),
        ("oversize", 2),
        ("invalid_json", 1),
        ("not_json", 1),
    ] {
        let name = custom(&transform::metrics::bodies_skipped(reason));
        envoy.wait_stat_at_least(&name, n).await.unwrap();
    }
    for reason in ["encoded", "oversize", "invalid_json", "not_json"] {
        let name = custom(&transform::metrics::bodies_refused(reason));
        assert_eq!(envoy.stat(&name).await.unwrap().unwrap_or(0), 0, "{name}");
    }
}

/// transform as Istio's WasmPlugin runs it: without `allow_on_headers_stop_iteration` (a
/// WasmPlugin cannot set it), so with `response_headers_mode: stream`.
async fn envoy_without_header_hold(config: &Value, up: &Upstream) -> Envoy {
    let filter = chain::wasm_without_header_hold("transform", config).unwrap();
    assert!(
        filter["typed_config"]["config"]
            .get("allow_on_headers_stop_iteration")
            .is_none(),
        "{filter}"
    );
    single_upstream("transform-stream", vec![filter], up.port())
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// Stream mode without the flag: rewritable bodies are rewritten (nothing stalls: the client
/// gives up after 10 s), and no unprocessable body reaches the client. One the headers already
/// show to be unprocessable becomes the 502; one found so only in the body (invalid JSON, too
/// large once buffered) is replaced by the same JSON error under the upstream's 200, whose
/// headers were sent before the body was known.
#[tokio::test]
async fn stream_mode_without_the_header_hold_flag_strips_and_never_leaks() {
    let bodies = Unprocessable::new();
    let up = bodies.upstream().await;
    let mut config = strip_rule();
    config["max_body_bytes"] = json!(2048);
    config["response_headers_mode"] = json!("stream");
    let envoy = envoy_without_header_hold(&config, &up).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |p: &str| c.get(envoy.url("main", p)).send();

    for path in ["/orders/json", "/orders/json-chunked"] {
        let resp = get(path).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.bytes().await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, expected_stripped(), "{path}");
    }
    // Refused from the headers: the 502, as in hold mode.
    for (path, what) in [
        ("/orders/gzip", "gzip-encoded JSON"),
        ("/orders/big", "over max_body_bytes by content-length"),
        ("/orders/text", "not JSON"),
    ] {
        assert_refused(get(path).await.unwrap(), what).await;
    }
    // Refused once buffered: the upstream's status, the error body.
    for (path, what) in [
        ("/orders/invalid", "invalid JSON"),
        ("/orders/big-chunked", "over max_body_bytes while buffering"),
    ] {
        let resp = get(path).await.unwrap();
        assert_eq!(resp.status(), 200, "{what}: the upstream's status");
        assert!(resp.headers().get("content-length").is_none(), "{what}");
        assert_error_body(resp, what).await;
    }
    // Empty bodies and 204s pass, as in hold mode.
    let empty = get("/orders/empty-text").await.unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.bytes().await.unwrap().len(), 0);
    assert_eq!(get("/orders/no-content").await.unwrap().status(), 204);

    for (reason, n) in [
        ("encoded", 1),
        ("oversize", 2),
        ("not_json", 1),
        ("invalid_json", 1),
    ] {
        let name = custom(&transform::metrics::bodies_refused(reason));
        assert_eq!(
            envoy.wait_stat_at_least(&name, n).await.unwrap(),
            n,
            "{name}"
        );
    }
    let rewritten = &custom(transform::metrics::BODIES_REWRITTEN);
    assert_eq!(envoy.wait_stat_at_least(rewritten, 2).await.unwrap(), 2);
    let log = envoy
        .wait_log("upstream response body replaced by the error body")
        .await
        .unwrap();
    assert!(
        log.contains("replaced by a 502: the body is content-encoded"),
        "{log}"
    );
    assert!(log.contains("the body is not valid JSON"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// An upstream answering one request on one connection with a chunked JSON body: `first`
/// with the headers, the rest (`second`, then the end) only once `go` fires.
async fn two_part_upstream(
    first: String,
    second: String,
    go: tokio::sync::oneshot::Receiver<()>,
) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        let start = format!("{head}{}", chunk(&first));
        conn.write_all(start.as_bytes()).await.unwrap();
        let _ = go.await;
        let rest = format!("{}0\r\n\r\n", chunk(&second));
        conn.write_all(rest.as_bytes()).await.unwrap();
    });
    (port, task)
}

/// Stream mode: the headers reach the client while the upstream is still sending the body, and
/// a body that grows past `max_body_bytes` is dropped: neither what came before the refusal nor
/// what comes after it reaches the client, which gets the JSON error under the 200.
#[tokio::test]
async fn stream_mode_drops_a_body_refused_midway_and_everything_after_it() {
    let mut big = order_doc();
    big["padding"] = Value::String("x".repeat(3000));
    let big = big.to_string();
    let (first, second) = big.split_at(2500);
    let (go, wait) = tokio::sync::oneshot::channel();
    let (port, upstream) = two_part_upstream(first.to_string(), second.to_string(), wait).await;
    let mut config = strip_rule();
    config["max_body_bytes"] = json!(2048);
    config["response_headers_mode"] = json!("stream");
    let filter = chain::wasm_without_header_hold("transform", &config).unwrap();
    let envoy = single_upstream("transform-stream-midway", vec![filter], port)
        .unwrap()
        .start()
        .await
        .unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // The headers arrive although the upstream has not finished the body: nothing holds them.
    let resp = c
        .get(envoy.url("main", "/orders/midway"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    go.send(()).unwrap();
    assert_error_body(resp, "refused midway").await;
    assert_eq!(
        envoy
            .wait_stat_at_least(&custom(&transform::metrics::bodies_refused("oversize")), 1)
            .await
            .unwrap(),
        1
    );
    upstream.await.unwrap();
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}

#[tokio::test]
async fn strip_routes_never_forward_accept_encoding() {
    let up = Upstream::echo().await.unwrap();
    let envoy = envoy_with(&strip_rule(), &up).await;
    let c = raw_client();
    for path in ["/orders/7", "/orders/7?page=2"] {
        let resp = c
            .get(envoy.url("main", path))
            .header("accept-encoding", "gzip, br, zstd")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(up.last().header("accept-encoding"), None, "{path}");
    }
    // Routes without response body operations keep what the client accepts.
    c.get(envoy.url("main", "/other"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().header("accept-encoding").as_deref(), Some("gzip"));
}

#[tokio::test]
async fn request_json_body_shimmed_for_old_clients() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({ "rules": [{ "match": { "path_exact": "/signup", "methods": ["POST"] },
        "request": { "body": { "rename": { "user_name": "username" }, "strip": ["password_confirmation"], "set": { "client": "legacy" } } } }]});
    let envoy = envoy_with(&config, &up).await;
    let resp = client()
        .post(envoy.url("main", "/signup"))
        .header("content-type", "application/json")
        .body(r#"{"user_name":"ada","password":"x","password_confirmation":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = up.last();
    assert_eq!(
        got.json(),
        json!({ "username": "ada", "password": "x", "client": "legacy" })
    );
    // The filter removes content-length when it may rewrite (see docs/transform.md): the body then goes
    // chunked, or with a content-length that Envoy computed from the rewritten body.
    match got.header("content-length") {
        Some(len) => assert_eq!(len.parse::<usize>().unwrap(), got.body.len()),
        None => assert_eq!(got.header("transfer-encoding").as_deref(), Some("chunked")),
    }
}

#[tokio::test]
async fn first_match_wins_and_default_applies_otherwise() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({
        "rules": [
            { "name": "a", "match": { "path_prefix": "/a", "headers": [{ "name": "x-tier", "exact": "gold" }] },
              "request": { "headers": { "set": { "x-rule": "gold" } } } },
            { "name": "b", "match": { "path_prefix": "/a" }, "request": { "headers": { "set": { "x-rule": "a" } } } },
            { "name": "c", "match": { "path_prefix": "/a/b" }, "request": { "headers": { "set": { "x-rule": "never" } } } }
        ],
        "default": { "request": { "headers": { "set": { "x-rule": "default" } } } }
    });
    let envoy = envoy_with(&config, &up).await;
    let c = client();
    c.get(envoy.url("main", "/a/b"))
        .header("x-tier", "gold")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().header("x-rule").as_deref(), Some("gold"));
    c.get(envoy.url("main", "/a/b")).send().await.unwrap();
    assert_eq!(up.last().header("x-rule").as_deref(), Some("a"));
    c.get(envoy.url("main", "/other")).send().await.unwrap();
    assert_eq!(up.last().header("x-rule").as_deref(), Some("default"));
}

#[tokio::test]
async fn non_utf8_header_values_do_not_crash_the_vm() {
    let up = Upstream::echo().await.unwrap();
    let config = json!({ "rules": [{ "request": { "headers": { "set": { "x-copy": "${header.x-bin}" } } } }] });
    let envoy = envoy_with(&config, &up).await;
    let c = client();
    for _ in 0..3 {
        let v = reqwest::header::HeaderValue::from_bytes(b"caf\xe9 \xff").unwrap();
        let resp = c
            .get(envoy.url("main", "/bin"))
            .header("x-bin", v)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // The VM is still alive and still applying rules.
    let resp = c
        .get(envoy.url("main", "/ok"))
        .header("x-bin", "plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("x-copy").as_deref(), Some("plain"));
    assert!(!envoy.log().contains("panicked"), "{}", envoy.log());
}

/// Every bad-config fixture of the filter crate is refused by a real Envoy, and the reason
/// (the fixture's expected message) shows up in Envoy's log.
#[tokio::test]
async fn bad_configs_are_refused_with_their_reason_in_envoys_log() {
    let dir = tools::repo_root().join("filters/transform/tests/fixtures/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "expected bad-config fixtures in {}",
        dir.display()
    );
    let wasm = tools::wasm("transform").unwrap().display().to_string();
    // A handful through Envoy (each start costs a second); the crate's unit test covers all.
    for case in cases.iter().take(4) {
        let config = std::fs::read_to_string(case).unwrap();
        let expected = std::fs::read_to_string(case.with_extension("expected")).unwrap();
        let builder = single_upstream(
            "bad-config",
            vec![chain::wasm_at("transform", &wasm, &config)],
            9,
        )
        .unwrap();
        let (status, log) = builder
            .start_expecting_exit(Duration::from_secs(20))
            .await
            .unwrap();
        assert!(
            !status.success(),
            "{}: Envoy accepted a bad config",
            case.display()
        );
        assert!(
            log.contains(expected.trim()),
            "{}: expected {:?} in Envoy's log:\n{log}",
            case.display(),
            expected.trim()
        );
    }
}
