//! The edge itself: the body limit, CORS, request ids, trace headers and the JSON access log.

use crate::prelude::*;

#[tokio::test]
async fn body_over_one_mebibyte_is_413() {
    const MIB: usize = 1024 * 1024;
    let gw = Gateway::start(Opts::default()).await;
    let port = gw.envoy.port("gateway");
    let uploads = || api_requests(&gw.products).len();
    // Exactly 1 MiB passes, whole, with either framing.
    assert_eq!(raw_post(port, "/api/products/up", MIB, false).await, 200);
    assert_eq!(last(&gw.products).body.len(), MIB);
    assert_eq!(raw_post(port, "/api/products/up", MIB, true).await, 200);
    assert_eq!(last(&gw.products).body.len(), MIB);
    assert_eq!(uploads(), 2);
    // One byte more is refused by declared length, at once. A chunked body is refused once what
    // Envoy has buffered before the end of the stream exceeds 1 MiB, so its cut is exact only
    // to one socket read (a final read carrying the excess and the end is not re-checked).
    assert_eq!(
        raw_post(port, "/api/products/up", MIB + 1, false).await,
        413
    );
    assert_eq!(
        raw_post(port, "/api/products/up", 4 * MIB, false).await,
        413
    );
    // Repeated: a body held behind a filter that pauses on headers (the rate-limit call) used
    // to stall here now and then, which is why the buffer filter sits early in the chain.
    for i in 0..5 {
        let status = raw_post(port, "/api/products/up", 4 * MIB, true).await;
        assert_eq!(status, 413, "chunked 4 MiB, try {i}");
    }
    assert_eq!(uploads(), 2, "an oversize body got through");
}

#[tokio::test]
async fn cors_request_ids_trace_headers_and_json_access_log() {
    let gw = Gateway::start(Opts::default()).await;
    let c = client();

    // Preflight: answered by Envoy's CORS filter, without a token, never upstream.
    let resp = c
        .request(reqwest::Method::OPTIONS, gw.url("/api/users/1"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert!(header(&resp, "access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let resp = c
        .request(reqwest::Method::OPTIONS, gw.url("/api/users/1"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    assert_eq!(
        resp.status(),
        401,
        "a preflight from an unknown origin is an unauthenticated request"
    );
    assert!(api_requests(&gw.users).is_empty());

    // A request: x-request-id generated and returned, trace headers passed through.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = gw
        .get("/api/users/42")
        .header("origin", ORIGIN)
        .header("traceparent", traceparent)
        .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
        .header("x-b3-spanid", "e457b5a2e4d86bd1")
        .header("x-b3-sampled", "1")
        .header("user-agent", "gateway-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    let request_id = header(&resp, "x-request-id").expect("x-request-id in the response");
    let got = last(&gw.users);
    assert_eq!(
        got.header("x-request-id").as_deref(),
        Some(request_id.as_str())
    );
    assert_eq!(got.header("traceparent").as_deref(), Some(traceparent));
    assert_eq!(
        got.header("x-b3-traceid").as_deref(),
        Some("80f198ee56343ba864fe8b2a57d3eff7")
    );
    assert_eq!(
        got.header("x-b3-spanid").as_deref(),
        Some("e457b5a2e4d86bd1")
    );

    // The access log line for it (Envoy flushes the file about once a second).
    let line = wait::until("the access log line", Duration::from_secs(10), || {
        let path = gw.access_log.clone();
        let id = request_id.clone();
        async move {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["request_id"] == id.as_str()))
        }
    })
    .await
    .unwrap();
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["path"], "/api/users/42", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["user_id"], "user-1", "{line}");
    assert_eq!(line["tenant"], "acme", "{line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(line["user_agent"], "gateway-test/1.0", "{line}");
    assert_eq!(line["upstream_cluster"], "users", "{line}");
    assert_eq!(line["ratelimit_remaining"], "999999", "{line}");
    assert_eq!(line["traceparent"], traceparent, "{line}");
    assert!(line["duration_ms"].is_number(), "{line}");
    assert!(
        line["upstream_ms"]
            .as_str()
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{line}"
    );

    // Prometheus stats on the admin port.
    let prom = client()
        .get(gw.envoy.admin_url("/stats/prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        prom.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"users\"}"),
        "no users request count in /stats/prometheus"
    );
}
