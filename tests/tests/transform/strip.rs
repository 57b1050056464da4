//! Stripping JSON response fields: buffered and chunked bodies, and bodies the strip cannot process refused or passed.

use crate::prelude::*;
use crate::support::{
    assert_refused, envoy_with, expected_stripped, order_doc, strip_rule, transform_filter,
    Unprocessable, SECRET,
};

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

/// A client that leaves bodies as sent (no decompression): we compare raw bytes.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .build()
        .unwrap()
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
