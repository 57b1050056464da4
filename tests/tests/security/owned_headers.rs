//! Owned headers: one list, removed first; a client's copies, as headers or trailers, reach no upstream on any route.

use crate::prelude::*;
use crate::support::{jwt_identity_headers, lower, writer_token};

const FORGED: &str = "forged-by-client";

/// The identity headers the review found forgeable, attacked whatever the config's owned list
/// says (the config's list is attacked too, so a header added to it later is covered).
const IDENTITY_HEADERS: [&str; 5] = [
    "x-user-id",
    "x-org-id",
    "x-tenant-id",
    "x-jwt-tenant",
    "x-gateway-route",
];

/// The config's owned headers and [`IDENTITY_HEADERS`].
fn attacked_headers(owned: Vec<String>) -> Vec<String> {
    let mut all: BTreeSet<String> = owned.into_iter().collect();
    all.extend(IDENTITY_HEADERS.iter().map(|h| h.to_string()));
    all.into_iter().collect()
}

/// Finding 6 and the owned-headers rule, as a config check: one filter, first in the chain,
/// removes every header the gateway writes for upstreams (from headers and from trailers), and
/// every header a filter below writes or a rate-limit descriptor reads is on its list.
#[test]
fn owned_headers_are_one_list_removed_first_and_cover_every_header_the_gateway_writes() {
    let gw = GatewayConfig::load();
    assert_eq!(
        gw.filter_names().first().map(String::as_str),
        Some("owned_headers"),
        "the owned-headers filter must run before every other filter"
    );
    let owned: BTreeSet<String> = gw.owned_headers().into_iter().collect();
    let trailers: BTreeSet<String> = gw.owned_trailers().into_iter().collect();
    assert_eq!(owned, trailers, "trailers are cleaned of the same headers");

    let mut written = BTreeSet::new();
    // jwt_auth: the user id and each claim header (identities), and the tenant, payload and
    // plan headers of every provider.
    written.extend(jwt_identity_headers(&gw));
    let jwt = gw.wasm_config("jwt_auth");
    for provider in jwt["providers"].as_object().unwrap().values() {
        for key in ["tenant_header", "forward_payload_header", "plan_header"] {
            if provider[key].is_string() {
                written.insert(lower(&provider[key]));
            }
        }
    }
    // The tenant stage: the tenant (and plan) headers it writes.
    let tenant = gw.wasm_config("tenant_request");
    for key in ["tenant_header", "plan_header"] {
        if tenant[key].is_string() {
            written.insert(lower(&tenant[key]));
        }
    }
    // transform: every request header a rule sets, adds or renames to.
    // The named rules routes choose, the deprecated matcher rules and `default`: a rule of
    // either form counts.
    let transform = gw.wasm_config("transform");
    let mut rules = transform["rules"].as_array().cloned().unwrap_or_default();
    rules.extend(
        transform["transform_rules"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, r)| r.clone()),
    );
    assert!(
        !rules.is_empty(),
        "transform has no rules: this check would check nothing"
    );
    for rule in rules.iter().chain(std::iter::once(&transform["default"])) {
        let headers = &rule["request"]["headers"];
        for key in ["set", "add"] {
            for name in headers[key]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                written.insert(name.to_ascii_lowercase());
            }
        }
        for target in headers["rename"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, v)| v)
        {
            written.insert(lower(target));
        }
    }
    // Rate-limit descriptors: a header a limit keys on must be the gateway's, or a client
    // picks its own bucket.
    written.extend(gw.descriptor_headers());
    let missing: Vec<_> = written.difference(&owned).collect();
    assert!(
        missing.is_empty(),
        "headers the gateway writes or keys limits on, not removed from client input: {missing:?}"
    );
}

/// Finding 6 (and every owned header): a client's copies of the gateway's headers never reach
/// an upstream, on any route of the config, over plain requests, WebSocket and gRPC.
#[tokio::test]
async fn forged_owned_headers_reach_no_upstream_on_any_route() {
    let gw = Gateway::start(Opts::default()).await;
    let owned = attacked_headers(GatewayConfig::load().owned_headers());
    let mut checked = 0;
    for route in GatewayConfig::load().routes() {
        if route.is_direct() {
            continue;
        }
        let seen = if route.is_grpc() {
            grpc_with_forged_headers(&gw, &owned).await
        } else if route.is_transcoded() {
            transcoded_with_forged_headers(&gw, &route, &owned).await
        } else if route.is_upgrade() {
            upgrade_with_forged_headers(&gw, &route, &owned).await
        } else {
            http_with_forged_headers(&gw, &route, &owned).await
        };
        for name in &owned {
            let got = seen.get(name).cloned().unwrap_or_default();
            assert!(
                !got.contains(FORGED),
                "{}: the upstream got the client's {name}: {got}",
                route.describe()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} routes checked");
}

type Seen = std::collections::HashMap<String, String>;

async fn http_with_forged_headers(gw: &Gateway, route: &Route, owned: &[String]) -> Seen {
    let ups = [&gw.orders_v1, &gw.orders_v2, &gw.users, &gw.products];
    let before: Vec<usize> = ups.iter().map(|u| u.requests().len()).collect();
    let mut req = gw
        .route_request(route, reqwest::Method::GET, &route.sample_path())
        .bearer_auth(writer_token());
    for name in owned {
        req = req.header(name.as_str(), FORGED);
    }
    let resp = req.send().await.unwrap();
    if route.cluster().as_deref() == Some("events") {
        return parse_head(&gw.events.last_head());
    }
    assert!(
        resp.status().is_success(),
        "{}: {}",
        route.describe(),
        resp.status()
    );
    let arrived: Vec<Recorded> = ups
        .iter()
        .zip(before)
        .flat_map(|(u, n)| u.requests().into_iter().skip(n))
        .filter(|r| r.path != "/healthz")
        .collect();
    // An aggregated route calls each of its legs; any other route, one upstream.
    let aggregated = !route.raw["metadata"]["filter_metadata"]["edgegate"]["aggregate"].is_null();
    assert!(
        arrived.len() == 1 || (aggregated && arrived.len() > 1),
        "{}: {} requests upstream",
        route.describe(),
        arrived.len()
    );
    // Every value every call carried, per header name.
    let mut seen = Seen::new();
    for (n, v) in arrived.iter().flat_map(|r| &r.headers) {
        let entry = seen.entry(n.clone()).or_default();
        entry.push_str(&String::from_utf8_lossy(v));
        entry.push('\n');
    }
    seen
}

async fn upgrade_with_forged_headers(gw: &Gateway, route: &Route, owned: &[String]) -> Seen {
    let forged: String = owned.iter().map(|n| format!("{n}: {FORGED}\r\n")).collect();
    let head = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         authorization: Bearer {}\r\n{forged}\r\n",
        route.sample_path(),
        route.host(),
        writer_token()
    );
    let mut conn = TcpStream::connect(("127.0.0.1", gw.envoy.port("gateway")))
        .await
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with("http/1.1 101"), "{reply}");
    parse_head(&gw.events.last_head())
}

/// Header lines of a lower-cased HTTP/1.1 head.
fn parse_head(head: &str) -> Seen {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

async fn grpc_with_forged_headers(gw: &Gateway, owned: &[String]) -> Seen {
    let auth = format!("Bearer {}", writer_token());
    let mut metadata = vec![("authorization", auth.as_str())];
    metadata.extend(owned.iter().map(|name| (name.as_str(), FORGED)));
    grpc_check(&grpc_channel(gw).await, &metadata)
        .await
        .unwrap();
    owned_in(&gw.grpc.last(), owned)
}

/// The owned headers among a gRPC call's metadata.
fn owned_in(seen: &tonic::metadata::MetadataMap, owned: &[String]) -> Seen {
    owned
        .iter()
        .filter_map(|n| {
            let v = seen.get(n.as_str())?.to_str().ok()?.to_string();
            Some((n.clone(), v))
        })
        .collect()
}

/// A REST request the transcoder turns into a gRPC call: what the call's metadata carried.
async fn transcoded_with_forged_headers(gw: &Gateway, route: &Route, owned: &[String]) -> Seen {
    let before = gw.grpc.metadata.lock().unwrap().len();
    let mut req = gw
        .route_request(route, reqwest::Method::GET, &route.sample_path())
        .bearer_auth(writer_token());
    for name in owned {
        req = req.header(name.as_str(), FORGED);
    }
    let status = req.send().await.unwrap().status();
    let calls = gw.grpc.metadata.lock().unwrap().len();
    assert_eq!(
        calls,
        before + 1,
        "{}: {status}: one gRPC call",
        route.describe()
    );
    owned_in(&gw.grpc.last(), owned)
}

/// The review's unconfirmed suspicion: HTTP/2 request trailers named like owned headers reach
/// gRPC upstreams. An h2c upstream records the trailers it gets; the client sends a body with
/// `x-user-id` and `x-tenant-id` trailers.
#[tokio::test]
async fn owned_headers_sent_as_request_trailers_are_removed() {
    let recorder = TrailerRecorder::start().await;
    let gw = Gateway::start(Opts {
        grpc_port: Some(recorder.port),
        ..Opts::default()
    })
    .await;
    let owned = attacked_headers(GatewayConfig::load().owned_trailers());
    let mut trailers = hyper::HeaderMap::new();
    for name in &owned {
        trailers.insert(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            FORGED.parse().unwrap(),
        );
    }
    trailers.insert("x-harmless", "kept".parse().unwrap());
    let status = h2_with_trailers(&gw, "/grpc.health.v1.Health/Check", trailers).await;
    assert_eq!(status, 200);
    let got = recorder.last();
    assert_eq!(
        got.get("x-harmless").map(String::as_str),
        Some("kept"),
        "the trailers arrived at all: {got:?}"
    );
    for name in &owned {
        assert_eq!(got.get(name), None, "trailer {name} reached the upstream");
    }
}

/// An HTTP/2 (h2c) gRPC-shaped POST whose body ends with `trailers`. Returns the status.
async fn h2_with_trailers(gw: &Gateway, path: &str, trailers: hyper::HeaderMap) -> u16 {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = hyper::Request::post(gw.url(path))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", writer_token()))
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// An h2c upstream that records the request trailers of each call and answers gRPC OK.
struct TrailerRecorder {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TrailerRecorder {
    async fn start() -> TrailerRecorder {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let store = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let store = store.clone();
            async move {
                let collected = req.into_body().collect().await.ok();
                let trailers = collected
                    .and_then(|c| c.trailers().cloned())
                    .unwrap_or_default();
                store.lock().unwrap().push(
                    trailers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                );
                axum::response::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "0")
                    .body(axum::body::Body::empty())
                    .unwrap()
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TrailerRecorder { port, seen, task }
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for TrailerRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
