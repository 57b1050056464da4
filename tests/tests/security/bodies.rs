//! Bodies: the 1 MiB request limit on every route and framing; response bodies the strip cannot process never reach the client.

use crate::prelude::*;
use crate::support::writer_token;

const MIB: usize = 1024 * 1024;

/// Finding 4: the 1 MiB body limit holds on every route that is not an upgrade, whatever the
/// framing: a 1.5 MiB chunked HTTP/1.1 body and an HTTP/2 body without content-length both get
/// 413, and nothing reaches an upstream.
#[tokio::test]
async fn streamed_bodies_over_the_limit_get_413_on_every_route() {
    let gw = Gateway::start(Opts::default()).await;
    let port = gw.envoy.port("gateway");
    let auth = format!("Bearer {}", writer_token());
    let h2 = h2c();
    let mut checked = 0;
    for route in GatewayConfig::load().routes() {
        if route.is_direct() || route.exact_headers().iter().any(|(n, _)| n == ":method") {
            // Direct answers have no upstream; the upgrade route only takes GET upgrades.
            continue;
        }
        let content_type = if route.is_grpc() {
            "application/grpc"
        } else {
            "application/octet-stream"
        };
        let mut headers = vec![
            ("authorization".to_string(), auth.clone()),
            ("content-type".to_string(), content_type.to_string()),
        ];
        headers.extend(route.exact_headers());
        let path = if route.is_grpc() {
            "/grpc.health.v1.Health/Check".to_string()
        } else {
            route.sample_path()
        };
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let head = raw_upload(port, &route.host(), &path, &pairs, MIB + MIB / 2, true).await;
        assert_too_large(&route, &head, "chunked HTTP/1.1");

        let chunks = (0..24).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024])));
        let mut req =
            h2.post(gw.url(&path))
                .header("host", route.host())
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )));
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let resp = req.send().await.unwrap();
        let head = format!(
            "http/2 {}\r\n{}",
            resp.status().as_u16(),
            resp.headers()
                .iter()
                .map(|(n, v)| format!("{n}: {}\r\n", v.to_str().unwrap_or("")))
                .collect::<String>()
        );
        assert_too_large(&route, &head, "HTTP/2 without content-length");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} routes checked");
    for up in [&gw.orders_v1, &gw.orders_v2, &gw.users, &gw.products] {
        assert!(
            api_requests(up).iter().all(|r| r.body.len() <= MIB),
            "an oversize body reached an upstream"
        );
    }
}

/// A 413 -- or, to a gRPC request, Envoy's translation of the local 413 into a gRPC error.
fn assert_too_large(route: &Route, head: &str, what: &str) {
    let head = head.to_ascii_lowercase();
    let status = status_of(&head);
    if route.is_grpc() {
        assert!(
            status == 200
                && !head.contains("grpc-status: 0")
                && head.contains("grpc-message: ")
                && head.contains("payload_too_large"),
            "{}: {what}: {head}",
            route.describe()
        );
    } else {
        assert_eq!(status, 413, "{}: {what}: {head}", route.describe());
        assert!(
            head.contains("content-type: application/json"),
            "{}: {what}: a JSON answer: {head}",
            route.describe()
        );
    }
}

/// The review's first weakness, as a config check: a transform rule that rewrites response
/// bodies can only fail closed if Envoy lets transform hold the response headers while it
/// checks the body (`allow_on_headers_stop_iteration`); without it those responses would stall.
/// No other wasm filter may have the setting (it would let request bodies through while
/// jwt_auth is still deciding).
#[test]
fn transform_can_hold_response_headers_and_no_other_filter_can() {
    let gw = GatewayConfig::load();
    for filter in gw.http_filters() {
        let name = filter["name"].as_str().unwrap_or_default();
        let config = &filter["typed_config"]["config"];
        if config.is_null() {
            continue;
        }
        let allowed = config["allow_on_headers_stop_iteration"].as_bool() == Some(true);
        assert_eq!(allowed, name == "transform", "{name}");
    }
}

/// The review's first weakness, as the attack: the users route strips `password_hash`; an
/// upstream that answers gzip-encoded, invalid or non-JSON bodies must not get the secret to
/// the client. Each becomes 502 with a JSON body naming no internals; the upstream was asked
/// for an identity body (the client's accept-encoding never reaches it).
#[tokio::test]
async fn a_body_the_strip_cannot_process_never_reaches_the_client() {
    use std::io::Write;
    let secret = "hash-of-the-password-SECRET";
    let gzipped = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(
            json!({"id": 7, "password_hash": secret})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        enc.finish().unwrap()
    };
    let gw = Gateway::start(Opts {
        users: Arc::new(move |r: &Recorded| {
            let body = json!({"id": 7, "password_hash": secret}).to_string();
            if r.path.ends_with("/gzip") {
                Reply::new(200)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(Bytes::from(gzipped.clone()))
            } else if r.path.ends_with("/invalid") {
                Reply::new(200)
                    .header("content-type", "application/json")
                    .body(Bytes::from(format!(
                        "{body}, \"password_hash\": \"{secret}\""
                    )))
            } else if r.path.ends_with("/text") {
                Reply::text(200, &format!("password_hash={secret}"))
            } else {
                Reply::json(200, &json!({"id": 7, "password_hash": secret}))
            }
        }),
        ..Opts::default()
    })
    .await;
    for case in ["gzip", "invalid", "text"] {
        let resp = gw
            .get(&format!("/api/users/7/{case}"))
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, 502, "{case}: {text}");
        assert!(
            !text.contains(secret),
            "{case}: the secret reached the client"
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"], "bad_gateway", "{case}: {body}");
        assert!(
            !body.to_string().contains("gzip") && !body.to_string().contains("json"),
            "{case}: the error names internals: {body}"
        );
        assert_eq!(last(&gw.users).header("accept-encoding"), None, "{case}");
    }
    // A body it can process is stripped as before.
    let (status, body) = answer(gw.get("/api/users/7")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], 7);
    assert!(body.get("password_hash").is_none(), "{body}");
}
