//! The security review of the reference gateway, as attacks: each test is one finding of the
//! review (issue "Security review of the running gateway"), run against the shipped
//! `envoy/gateway.yaml` with real Envoy, the real filters, Redis and the rate-limit service.
//! Tests that cover "every route" take the routes from the config itself
//! ([`GatewayConfig`]), so a route added later is attacked too.

use bytes::Bytes;
use gateway_tests::envoy::custom;
use gateway_tests::gateway::*;
use gateway_tests::gateway_config::{GatewayConfig, Route};
use gateway_tests::upstream::{Recorded, Reply};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
const MIB: usize = 1024 * 1024;

/// A token for user-1 of acme that may read and write orders: the tests below are about what
/// else a legitimate user can do.
fn writer_token() -> String {
    token("user-1", "acme", "orders:read orders:write")
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
    let transform = gw.wasm_config("transform");
    let rules = transform["rules"].as_array().cloned().unwrap_or_default();
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

/// The user and org identities jwt_auth forwards: `x-user-id` and every provider's
/// `claim_to_headers` header, lower-cased.
fn jwt_identity_headers(gw: &GatewayConfig) -> BTreeSet<String> {
    let mut out = BTreeSet::from([jwt_auth::config::USER_ID_HEADER.to_string()]);
    let jwt = gw.wasm_config("jwt_auth");
    for provider in jwt["providers"].as_object().unwrap().values() {
        for mapping in provider["claim_to_headers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.insert(lower(&mapping["header_name"]));
        }
    }
    out
}

fn lower(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_ascii_lowercase()
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
    let mut req = client()
        .get(gw.url(&route.sample_path()))
        .header("host", route.host())
        .bearer_auth(writer_token());
    for (name, value) in route.exact_headers() {
        if !name.starts_with(':') {
            req = req.header(name, value);
        }
    }
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
    assert_eq!(
        arrived.len(),
        1,
        "{}: one request upstream",
        route.describe()
    );
    arrived[0]
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
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
    let seen = gw.grpc.last();
    owned
        .iter()
        .filter_map(|n| {
            let v = seen.get(n.as_str())?.to_str().ok()?.to_string();
            Some((n.clone(), v))
        })
        .collect()
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

/// Finding 3: gRPC UNIMPLEMENTED is the client's error. Ten calls to a method that does not
/// exist, then a healthy call: the backend is still in service and nothing was ejected. The
/// same for an HTTP service answering 500 to one user's requests.
#[tokio::test]
async fn client_errors_never_eject_a_backend() {
    let gw = Gateway::start(Opts {
        users: Arc::new(|r: &Recorded| {
            if r.path.contains("boom") {
                Reply::json(500, &json!({"error": "handler error"}))
            } else {
                Reply::json(200, &json!({"service": "users"}))
            }
        }),
        ..Opts::default()
    })
    .await;
    let h2 = h2c();
    for i in 0..10 {
        let resp = h2
            .post(gw.url("/grpc.health.v1.Health/NoSuchMethod"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .bearer_auth(writer_token())
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&resp, "grpc-status").as_deref(),
            Some("12"),
            "call {i}: UNIMPLEMENTED expected"
        );
    }
    for i in 0..10 {
        let (status, _) = answer(
            client()
                .post(gw.url("/api/users/boom"))
                .bearer_auth(writer_token())
                .body("{}"),
        )
        .await;
        assert_eq!(status, 500, "request {i}");
    }
    // The ejection would be immediate (consecutive counters); the healthy calls still land.
    let auth = format!("Bearer {}", writer_token());
    let status = grpc_check(&grpc_channel(&gw).await, &[("authorization", &auth)]).await;
    assert_eq!(status.unwrap(), 1, "SERVING");
    assert_eq!(served(gw.get("/api/users/1")).await.0, "users");
    for cluster in ["grpc_backend", "users"] {
        let ejected = gw
            .envoy
            .stat(&format!(
                "cluster.{cluster}.outlier_detection.ejections_enforced_total"
            ))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(ejected, 0, "{cluster} was ejected by client errors");
    }
}

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

/// Finding 5: methods are case-sensitive. HTTP/2 lets a client send `get`; with a read-only
/// token that must not pass as GET (the read rule): it falls to the strictest rule and is
/// refused, and the orders service never sees it.
#[tokio::test]
async fn lower_case_methods_do_not_pass_as_get() {
    let gw = Gateway::start(Opts::default()).await;
    let port = gw.envoy.port("gateway");
    // Over HTTP/2 the host is the URL's authority: both names resolve to the gateway.
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("orders.api.localhost", loopback)
        .resolve("gateway.localhost", loopback)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let reader = token("user-1", "acme", "orders:read");
    let before = api_requests(&gw.orders_v1).len() + api_requests(&gw.orders_v2).len();
    for method in ["get", "Get", "gET", "head"] {
        for (host, path) in [
            ("gateway.localhost", "/api/orders/1"),
            ("orders.api.localhost", "/orders/1"),
        ] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let resp = h2
                .request(m, format!("http://{host}:{port}{path}"))
                .bearer_auth(&reader)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                status == 403 || status == 400,
                "{method} {host}{path} with a read-only token: {status}"
            );
        }
    }
    // The same token reads with GET.
    let resp = h2
        .get(gw.url("/api/orders/1"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let after = api_requests(&gw.orders_v1).len() + api_requests(&gw.orders_v2).len();
    assert_eq!(after, before + 1, "only the GET reached the orders service");
}

/// Finding 9: the cache is turned on by the catalog route itself, so a host spelled in upper
/// case or with a trailing dot cannot make a route the cache should skip cacheable. The orders
/// service marks its answers `public, max-age=60`; a second tenant still gets its own answer.
#[tokio::test]
async fn host_spelling_cannot_make_a_route_cacheable() {
    let cacheable = |name: &'static str| -> Handler {
        Arc::new(move |r: &Recorded| {
            Reply::json(
                200,
                &json!({"service": name, "path": r.path, "tenant": r.header("x-tenant-id")}),
            )
            .header("cache-control", "public, max-age=60")
        })
    };
    let gw = Gateway::start(Opts {
        orders_v1: cacheable("orders-v1"),
        orders_v2: cacheable("orders-v2"),
        ..Opts::default()
    })
    .await;
    for host in [
        "ORDERS.API.LOCALHOST",
        "orders.api.localhost.",
        "Orders.Api.Localhost",
    ] {
        for path in ["/api/catalog/1", "/orders/1"] {
            for tenant in ["acme", "globex", "acme", "globex"] {
                let resp = client()
                    .get(gw.url(path))
                    .header("host", host)
                    .bearer_auth(token("user-1", tenant, "orders:read"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{host}{path}");
                assert_eq!(
                    header(&resp, "age"),
                    None,
                    "{host}{path}: served from cache"
                );
                let body: Value = resp.json().await.unwrap();
                assert!(
                    body["service"].as_str().unwrap().starts_with("orders-"),
                    "{host}{path} was not routed to orders: {body}"
                );
                assert_eq!(body["tenant"], tenant, "{host}{path}");
            }
        }
    }
    // Every cache-enabled route is on the api host and is a GET-only catalog read.
    let cached: Vec<Route> = GatewayConfig::load()
        .routes()
        .into_iter()
        .filter(Route::enables_cache)
        .collect();
    assert!(!cached.is_empty());
    for route in &cached {
        assert_ne!(route.vhost, "orders_host", "{}", route.describe());
    }
}

/// A token for `sub` of `tenant` in organisation `org`.
fn token_in_org(sub: &str, tenant: &str, org: u64) -> String {
    let mut c = jwt_auth::testing::claims(now());
    c["iss"] = json!("https://idp.edgegate.localhost");
    c["sub"] = json!(sub);
    c["tenant"] = json!(tenant);
    c["scope"] = json!("orders:read");
    c["org"] = json!({ "id": org });
    jwt_auth::testing::sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c)
}

/// Finding 1, as a config check: a route the shared cache serves is tenant-wide. Its cluster
/// runs the tenant response stage, that stage's cache routes cover the route, and it withholds
/// every user or org identity jwt_auth forwards (x-user-id and each claim header) from the
/// upstream, so nothing stored once per tenant can depend on who asked.
#[test]
fn cached_routes_withhold_every_identity_jwt_auth_forwards() {
    let gw = GatewayConfig::load();
    let identities = jwt_identity_headers(&gw);
    let cached: Vec<Route> = gw
        .routes()
        .into_iter()
        .filter(Route::enables_cache)
        .collect();
    assert!(!cached.is_empty(), "no route enables the cache");
    for route in cached {
        let cluster = route.cluster().expect("a cached route has a cluster");
        let stage = gw.upstream_wasm_config(&cluster, "tenant_response");
        let withheld: BTreeSet<String> = stage["identity_headers"]
            .as_array()
            .expect("identity_headers is explicit on a cached cluster")
            .iter()
            .map(lower)
            .collect();
        let exposed: Vec<_> = identities.difference(&withheld).collect();
        assert!(
            exposed.is_empty(),
            "{}: the upstream of a cached route gets {exposed:?}",
            route.describe()
        );
        let prefix = route.prefix();
        let covered = stage["cache_routes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| {
                r["match"]["path_prefix"]
                    .as_str()
                    .is_some_and(|p| prefix.starts_with(p))
            });
        assert!(
            covered,
            "{}: not a cache route of tenant_response",
            route.describe()
        );
    }
}

/// Finding 1, as the attack: two users of one tenant, in different organisations, read the
/// same catalog item. The products service personalises by whatever identity it is given; the
/// cached answer the second user gets must not carry the first user's identity, because the
/// upstream is never told who asked on a cached route.
#[tokio::test]
async fn one_users_cached_answer_is_never_served_with_their_identity_to_another() {
    let gw = Gateway::start(Opts {
        products: Arc::new(|r: &Recorded| {
            Reply::json(
                200,
                &json!({"service": "products", "user": r.header("x-user-id"),
                        "org": r.header("x-org-id"), "tenant": r.header("x-tenant-id")}),
            )
        }),
        ..Opts::default()
    })
    .await;
    let read = |sub: &str, org: u64| {
        client()
            .get(gw.url("/api/catalog/42"))
            .bearer_auth(token_in_org(sub, "acme", org))
    };
    let first: Value = read("alice", 7).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["tenant"], "acme");
    // Until the file cache has written the entry, repeats are misses; either way no answer
    // may name a user or an organisation.
    let mut hit = false;
    for _ in 0..50 {
        let resp = read("bob", 9).send().await.unwrap();
        hit |= header(&resp, "age").is_some();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["user"], Value::Null, "{body}");
        assert_eq!(body["org"], Value::Null, "{body}");
        if hit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hit, "bob never got the cached entry");
    assert_eq!(first["user"], Value::Null, "{first}");
    for r in api_requests(&gw.products) {
        assert_eq!(r.header("x-user-id"), None, "{}", r.path);
        assert_eq!(r.header("x-org-id"), None, "{}", r.path);
    }
    // x-forwarded-for on the cache's own fetches: the connection manager appended the client's
    // hop, and the cache's side channel (an Envoy async client, which appends Envoy's local
    // address and has no option to stop) appends one more. The client's hop is the same as on
    // an uncached route; the extra element is the gateway itself (docs/security.md).
    let resp = client()
        .get(gw.url("/api/products/5"))
        .bearer_auth(token_in_org("dave", "acme", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let direct = last(&gw.products).header("x-forwarded-for").unwrap();
    assert!(
        !direct.contains(','),
        "one hop on an uncached route: {direct}"
    );
    let fetched = api_requests(&gw.products)
        .into_iter()
        .find(|r| r.path.starts_with("/api/catalog"))
        .and_then(|r| r.header("x-forwarded-for"))
        .unwrap();
    let hops: Vec<&str> = fetched.split(',').map(str::trim).collect();
    assert_eq!(hops.first(), Some(&direct.as_str()), "{fetched}");
    assert!(hops.len() <= 2, "{fetched}");
}

/// Finding 2: whatever an upstream says (`public, max-age=60, s-maxage=600` here), a response
/// to a credentialed request leaves the gateway `private`, on every route of the config, on a
/// miss and on a cache hit: a CDN or corporate proxy in front must not store one tenant's answer.
#[tokio::test]
async fn credentialed_answers_never_leave_the_gateway_public() {
    let public = |name: &'static str| -> Handler {
        Arc::new(move |r: &Recorded| {
            Reply::json(200, &json!({"service": name, "path": r.path}))
                .header("cache-control", "public, max-age=60, s-maxage=600")
        })
    };
    let gw = Gateway::start(Opts {
        orders_v1: public("orders-v1"),
        orders_v2: public("orders-v2"),
        users: public("users"),
        products: public("products"),
        ..Opts::default()
    })
    .await;
    let mut checked = 0;
    for route in GatewayConfig::load().routes() {
        if route.is_direct() || route.is_grpc() || route.is_upgrade() {
            continue;
        }
        if route.cluster().as_deref() == Some("events") {
            continue; // the events service speaks WebSocket only
        }
        for attempt in 0..3 {
            let mut req = client()
                .get(gw.url(&route.sample_path()))
                .header("host", route.host())
                .bearer_auth(writer_token());
            for (name, value) in route.exact_headers() {
                if !name.starts_with(':') {
                    req = req.header(name, value);
                }
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200, "{}", route.describe());
            let cc = header(&resp, "cache-control")
                .unwrap_or_default()
                .to_ascii_lowercase();
            assert!(
                !cc.contains("public") && !cc.contains("s-maxage"),
                "{} (attempt {attempt}): cache-control {cc:?}",
                route.describe()
            );
            assert!(
                cc.contains("private") || cc.contains("no-store"),
                "{} (attempt {attempt}): cache-control {cc:?}",
                route.describe()
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} routes checked");
}

/// A client whose connections come from `source` (a loopback address of its own).
fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from(source))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The review's third weakness: the global ceiling was spent before authentication, so an
/// unauthenticated flood denied every tenant. Unauthenticated requests now have their own
/// budget, per client address and global; a tenant's authenticated traffic next to the flood
/// is served throughout.
#[tokio::test]
async fn an_unauthenticated_flood_spends_only_its_own_budget() {
    let gw = Gateway::start(Opts::default()).await;
    let url = gw.url("/api/products/1");
    let tenant = client_from([127, 0, 0, 1]);
    let tok = token("user-1", "acme", "orders:read");
    // One address floods: past its bucket it gets 429 from the anonymous budget, not 401.
    let flooder = client_from([127, 0, 0, 2]);
    let (mut refused, mut limited) = (0, 0);
    for i in 0..150 {
        let (status, body) = answer(flooder.get(&url)).await;
        match status {
            401 => refused += 1,
            429 => {
                assert_eq!(body["error"], "rate_limited", "{body}");
                limited += 1;
            }
            other => panic!("anonymous request {i}: {other} {body}"),
        }
        if i % 10 == 0 {
            let resp = tenant.get(&url).bearer_auth(&tok).send().await.unwrap();
            assert_eq!(resp.status(), 200, "the tenant's request during the flood");
        }
    }
    assert!(
        limited > 50,
        "the flood was not limited: {refused} 401, {limited} 429"
    );
    // Another address still has its own budget...
    let (status, _) = answer(client_from([127, 0, 0, 3]).get(&url)).await;
    assert_eq!(
        status, 401,
        "a second address was limited by the first one's flood"
    );
    // ...until the global anonymous ceiling is spent by many addresses at once.
    let mut global = 0;
    for host in 10..40u8 {
        let c = client_from([127, 0, 0, host]);
        for _ in 0..40 {
            if c.get(&url).send().await.unwrap().status() == 429 {
                global += 1;
            }
        }
        let resp = tenant.get(&url).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "the tenant's request during the wide flood"
        );
    }
    assert!(global > 0, "the global anonymous ceiling never applied");
    let spent = gw
        .envoy
        .stat("http.gateway_ceiling.local_rate_limit.rate_limited")
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        spent, 0,
        "authenticated requests were rate limited by the flood"
    );
}

/// Finding 7, gRPC half: one consumer opens 300 gRPC calls whose request body never ends. The
/// gRPC route buffers requests, so none of them takes an upstream slot (the breakers allow
/// 256), another tenant's calls are answered meanwhile, and the connection manager's request
/// deadline ends the unfinished ones (408, as a gRPC error) instead of letting them live on.
#[tokio::test]
async fn unfinished_grpc_bodies_hold_no_upstream_slot_and_time_out() {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    type Chunk = Result<Frame<Bytes>, std::convert::Infallible>;
    let gw = Gateway::start(Opts::default()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<StreamBody<tokio_stream_shim::Receiver<Chunk>>>();
    let holder = token("holder", "acme", "orders:read");
    let mut senders = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..300 {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
        // Half a gRPC frame: a length prefix promising 100 bytes, and only 10 of them.
        tx.send(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 100]))))
            .await
            .unwrap();
        senders.push(tx);
        let req = hyper::Request::post(gw.url("/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {holder}"))
            .body(StreamBody::new(tokio_stream_shim::Receiver(rx)))
            .unwrap();
        calls.push(tokio::spawn(client.request(req)));
    }
    gw.envoy
        .wait_stat_at_least("http.gateway.downstream_rq_active", 300)
        .await
        .unwrap();
    // Another tenant's call is answered while the 300 are held.
    let channel = grpc_channel(&gw).await;
    let auth = format!("Bearer {}", token("user-2", "globex", "orders:read"));
    for i in 0..5 {
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            grpc_check(&channel, &[("authorization", &auth)]),
        )
        .await
        .unwrap_or_else(|_| panic!("call {i} hung behind the held streams"));
        assert_eq!(reply.unwrap(), 1, "call {i}: SERVING");
    }
    let active = gw
        .envoy
        .stat("cluster.grpc_backend.upstream_rq_active")
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(
        active < 10,
        "{active} upstream requests held by unfinished bodies"
    );
    // The deadline ends a held call: a gRPC error, not an answer from the service.
    let first = calls.remove(0);
    let resp = tokio::time::timeout(Duration::from_secs(45), first)
        .await
        .expect("the unfinished call was never ended")
        .unwrap()
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let _ = resp.into_body().collect().await;
    let grpc_status = headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(
        status == 408 || grpc_status.as_deref().is_some_and(|s| s != "0"),
        "{status} {headers:?}"
    );
    drop(senders);
}

/// A `Stream` over a tokio mpsc receiver (the request bodies the test keeps open).
mod tokio_stream_shim {
    pub struct Receiver<T>(pub tokio::sync::mpsc::Receiver<T>);

    impl<T> futures_util::Stream for Receiver<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

/// Findings 10 and 11: a token whose `sub` or `org.id` is missing, empty, not a string, padded,
/// or carries a comma, a control character or non-ASCII is refused (401 `invalid_claim`) by the
/// gateway as configured — never admitted without an identity (which would also escape the
/// per-consumer limit) and never forwarded raw for an upstream to trim into someone else's.
#[tokio::test]
async fn unusable_identity_claims_are_refused_not_dropped() {
    let gw = Gateway::start(Opts::default()).await;
    let base = || {
        let mut c = jwt_auth::testing::claims(now());
        c["iss"] = json!("https://idp.edgegate.localhost");
        c["tenant"] = json!("acme");
        c["scope"] = json!("orders:read");
        c
    };
    let bad_values = [
        None,
        Some(json!("")),
        Some(json!(" alice")),
        Some(json!("alice\t")),
        Some(json!("7,99")),
        Some(json!("al\u{1}ice")),
        Some(json!("älice")),
        Some(json!(["alice"])),
        Some(json!({"id": "alice"})),
        Some(json!(true)),
    ];
    let before = api_requests(&gw.users).len();
    for claim in ["sub", "org"] {
        for value in &bad_values {
            let mut c = base();
            let target = if claim == "sub" {
                c.as_object_mut().unwrap()
            } else {
                c["org"].as_object_mut().unwrap()
            };
            let key = if claim == "sub" { "sub" } else { "id" };
            match value {
                None => {
                    target.remove(key);
                }
                Some(v) => {
                    target.insert(key.to_string(), v.clone());
                }
            }
            let t =
                jwt_auth::testing::sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c);
            let (status, body) = answer(client().get(gw.url("/api/users/1")).bearer_auth(t)).await;
            assert_eq!(status, 401, "{claim} = {value:?}: {body}");
            assert_eq!(
                body["error"], "invalid_token",
                "{claim} = {value:?}: {body}"
            );
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("identity claim"),
                "{claim} = {value:?}: {body}"
            );
        }
    }
    assert_eq!(
        api_requests(&gw.users).len(),
        before,
        "a refused token reached users"
    );
    // Counted under the reason invalid_claim, one per token.
    let refused = 2 * bad_values.len() as u64;
    gw.envoy
        .wait_stat_at_least(
            &custom(&jwt_auth::metrics::denied("invalid_claim")),
            refused,
        )
        .await
        .unwrap();
    // A numeric sub is not a user id either; a numeric org id is its decimal text.
    let mut c = base();
    c["sub"] = json!(42);
    let t = jwt_auth::testing::sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c);
    assert_eq!(
        answer(client().get(gw.url("/api/users/1")).bearer_auth(t))
            .await
            .0,
        401
    );
    let mut c = base();
    c["sub"] = json!("user-9");
    c["org"] = json!({"id": 12});
    let t = jwt_auth::testing::sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c);
    assert_eq!(
        served(client().get(gw.url("/api/users/1")).bearer_auth(t))
            .await
            .0,
        "users"
    );
    let got = last(&gw.users);
    assert_eq!(got.header("x-user-id").as_deref(), Some("user-9"));
    assert_eq!(got.header("x-org-id").as_deref(), Some("12"));
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

/// Opens a WebSocket through the gateway as `token`; returns the connection (kept open) and
/// the response head.
async fn open_websocket(gw: &Gateway, token: &str) -> (TcpStream, String) {
    let head = format!(
        "GET /api/events/orders HTTP/1.1\r\nhost: gateway.localhost\r\nconnection: Upgrade\r\n\
         upgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: Bearer {token}\r\n\r\n"
    );
    let mut conn = TcpStream::connect(("127.0.0.1", gw.envoy.port("gateway")))
        .await
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn))
        .await
        .expect("no answer to the upgrade")
        .unwrap_or_default();
    (conn, reply)
}

/// Finding 7, WebSocket half: one consumer opens 300 WebSockets and holds them. Only its
/// in-flight cap (8) is admitted, the rest get 429 naming the consumer cap, the events
/// cluster's breakers are nowhere near full, and another user of the same tenant and another
/// tenant still open theirs. Closing one held stream frees its slot.
#[tokio::test]
async fn one_consumer_cannot_hold_the_streams_of_every_tenant() {
    let gw = Gateway::start(Opts::default()).await;
    let holder = token("holder", "acme", "orders:read");
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..300 {
        let (conn, reply) = open_websocket(&gw, &holder).await;
        if reply.starts_with("http/1.1 101") {
            held.push(conn);
        } else {
            assert!(reply.starts_with("http/1.1 429"), "stream {i}: {reply}");
            refused += 1;
        }
    }
    assert_eq!(held.len(), 8, "admitted in flight for one consumer");
    assert_eq!(refused, 292);
    // The refusal names the cap (read one body).
    let (mut conn, reply) = open_websocket(&gw, &holder).await;
    assert!(reply.starts_with("http/1.1 429"), "{reply}");
    let mut body = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut body))
        .await
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&body[..n]).unwrap_or(Value::Null);
    assert_eq!(body["error"], "too_many_streams", "{body}");
    assert_eq!(body["limit"], "consumer", "{body}");
    let active = gw
        .envoy
        .stat("cluster.events.upstream_rq_active")
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(active <= 8, "{active} upstream streams held");
    // Others still get through: a colleague at acme, and globex.
    for other in [
        token("colleague", "acme", "orders:read"),
        token("user-2", "globex", "orders:read"),
    ] {
        let (_conn, reply) = open_websocket(&gw, &other).await;
        assert!(reply.starts_with("http/1.1 101"), "{reply}");
    }
    // Closing one held stream frees one slot for the holder.
    drop(held.pop());
    let reopened = gateway_tests::wait::until(
        "the closed stream's slot to be released",
        Duration::from_secs(10),
        || {
            let holder = holder.clone();
            let gw = &gw;
            async move {
                let (conn, reply) = open_websocket(gw, &holder).await;
                Ok(reply.starts_with("http/1.1 101").then_some(conn))
            }
        },
    )
    .await
    .unwrap();
    drop(reopened);
}
