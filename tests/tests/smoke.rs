//! The harness itself: a real Envoy with the pass-through wasm filter in front of an upstream.

use gateway_tests::chain;
use gateway_tests::envoy::single_upstream;
use gateway_tests::upstream::{Reply, Upstream};
use serde_json::json;

#[tokio::test]
async fn passthrough_wasm_filter_proxies_requests() {
    let up = Upstream::start(|_| Reply::text(200, "hello").header("x-up", "1"))
        .await
        .unwrap();
    let envoy = single_upstream(
        "passthrough",
        vec![chain::wasm("passthrough", &json!({})).unwrap()],
        up.port(),
    )
    .unwrap()
    .start()
    .await
    .unwrap();
    let resp = reqwest::get(envoy.url("main", "/hi?x=1")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-up"], "1");
    assert_eq!(resp.text().await.unwrap(), "hello");
    assert_eq!(up.last().path, "/hi?x=1");
    assert_eq!(
        envoy
            .stat("cluster.upstream.upstream_rq_200")
            .await
            .unwrap(),
        Some(1)
    );
}
