//! The Envoy set-up, the strip rule and its document, and the unprocessable-body upstream and assertions.

use crate::prelude::*;

/// The transform filter as a deployment must configure it: `allow_on_headers_stop_iteration`
/// lets the filter hold response headers while a response body may yet be refused (without it
/// Envoy turns the pause into StopAllIterationAndWatermark and those responses stall).
pub fn transform_filter(config: &Value) -> Value {
    let mut filter = chain::wasm("transform", config).unwrap();
    filter["typed_config"]["config"]["allow_on_headers_stop_iteration"] = json!(true);
    filter
}

pub async fn envoy_with(config: &Value, up: &Upstream) -> Envoy {
    single_upstream("transform", vec![transform_filter(config)], up.port())
        .unwrap()
        .start()
        .await
        .unwrap()
}

pub fn order_doc() -> Value {
    json!({
        "id": 7,
        "debug_info": { "host": "db-1" },
        "user": { "name": "Ada", "ssn": "078-05-1120", "fullName": "Ada L." },
        "items": [ { "sku": "a", "internal_id": 1 }, { "sku": "b", "internal_id": 2 } ],
        "note": "keep"
    })
}

pub fn strip_rule() -> Value {
    json!({ "rules": [{ "match": { "path_prefix": "/orders" }, "response": { "body": {
        "strip": ["debug_info", "user.ssn", "items[*].internal_id"],
        "rename": { "user.fullName": "display_name" },
        "add": { "api_version": "v1" }
    }}}]})
}

pub fn expected_stripped() -> Value {
    json!({
        "id": 7,
        "user": { "name": "Ada", "display_name": "Ada L." },
        "items": [ { "sku": "a" }, { "sku": "b" } ],
        "note": "keep",
        "api_version": "v1"
    })
}

/// The value `strip_rule` removes (`user.ssn`): it must never reach a client.
pub const SECRET: &str = "078-05-1120";

/// Bodies transform cannot rewrite, each carrying `SECRET`, on the strip rule's `/orders` route
/// (`max_body_bytes` 2048 in the tests below), plus empty bodies that may pass.
pub struct Unprocessable {
    pub gzipped: Bytes,
    pub big: String,
    pub invalid: String,
    pub text: String,
}

impl Unprocessable {
    pub fn new() -> Self {
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

    pub async fn upstream(&self) -> Upstream {
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

/// The response is transform's 502: JSON in the gateway's error shape, nothing of the upstream.
pub async fn assert_refused(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 502, "{what}");
    assert_error_body(resp, what).await;
}

/// The response's body is transform's JSON error (whatever the status), nothing of the upstream.
pub async fn assert_error_body(resp: reqwest::Response, what: &str) {
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
