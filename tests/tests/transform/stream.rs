//! Stream mode: without the header-hold flag nothing stalls and nothing leaks, and a body refused midway is dropped whole.

use crate::prelude::*;
use crate::support::{
    assert_error_body, assert_refused, expected_stripped, order_doc, strip_rule, Unprocessable,
    SECRET,
};

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
