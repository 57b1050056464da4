//! The reference gateway (`envoy/gateway.yaml`) as a test fixture: real Envoy with the three
//! wasm filters, a JWKS endpoint, real Redis and the real ratelimit-service, in-process
//! upstreams for orders v1/v2, users and products, a WebSocket echo service and a gRPC health
//! service. `tests/tests/gateway/` (routing and resilience) and `tests/tests/security/`
//! (the security review's attacks) both start it through [`Gateway::start`].

use crate::envoy::{custom, Envoy, EnvoyBuilder};
use crate::jwks::JwksServer;
use crate::ratelimit::RateLimitService;
use crate::redis::RedisServer;
pub use crate::upstream::read_head;
use crate::upstream::{Recorded, Reply, Upstream, WebSocketEcho};
use crate::wait;
use jwt_auth::testing::{claims, jwks, sign};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const ISSUER: &str = "https://idp.edgegate.localhost";
pub const ORIGIN: &str = "https://app.edgegate.localhost";

/// Limits per hour, so nothing refills while a test runs: tenant `tiny` gets 3 requests, every
/// other tenant a million (so responses carry `x-ratelimit-remaining`), consumer `greedy` 2.
pub const RLS_CONFIG: &str = "\
domain: edge
descriptors:
  - key: tenant
    rate_limit: { unit: hour, requests_per_unit: 1000000 }
  - key: tenant
    value: tiny
    rate_limit: { unit: hour, requests_per_unit: 3 }
  - key: consumer
    value: greedy
    rate_limit: { unit: hour, requests_per_unit: 2 }
";

pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// The default service: 200 with its name and what it received.
pub fn service(name: &'static str) -> Handler {
    Arc::new(move |r: &Recorded| {
        Reply::json(
            200,
            &json!({"service": name, "path": r.path, "method": r.method}),
        )
    })
}

/// The last path segment of the readiness probes `Gateway::start` sends through each route.
pub const PROBE: &str = "/__probe";

/// Health checks and readiness probes, not a test's traffic.
pub fn is_probe(r: &Recorded) -> bool {
    r.path == "/healthz" || r.path.ends_with(PROBE)
}

/// An upstream answering health checks (`/healthz`) and probes itself and everything else with
/// `handler`.
pub async fn upstream(handler: Handler) -> Upstream {
    Upstream::start(move |r| {
        if is_probe(r) {
            // JSON: /api/users strips fields, and a body it cannot parse is a 502.
            Reply::json(200, &json!({"probe": "ok"}))
        } else {
            handler(r)
        }
    })
    .await
    .unwrap()
}

/// The last request of a test's own traffic (health checks arrive every second).
pub fn last(up: &Upstream) -> Recorded {
    api_requests(up)
        .pop()
        .expect("the upstream received no request")
}

/// Requests an upstream got that were not health checks or readiness probes.
pub fn api_requests(up: &Upstream) -> Vec<Recorded> {
    up.requests().into_iter().filter(|r| !is_probe(r)).collect()
}

pub struct Opts {
    pub orders_v1: Handler,
    pub orders_v2: Handler,
    pub users: Handler,
    pub products: Handler,
    /// Point the users cluster here instead of at the users upstream (a switchable proxy).
    pub users_port: Option<u16>,
    /// Point the gRPC cluster here instead of at the health service.
    pub grpc_port: Option<u16>,
    pub route_timeout: &'static str,
    pub report_timeout: &'static str,
    pub envoy_args: Vec<&'static str>,
    pub rls_args: Vec<&'static str>,
    /// Changes the shipped configuration's text before Envoy starts (a route added, ...).
    pub edit_config: Option<fn(&str) -> String>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            orders_v1: service("orders-v1"),
            orders_v2: service("orders-v2"),
            users: service("users"),
            products: service("products"),
            users_port: None,
            grpc_port: None,
            route_timeout: "8s",
            report_timeout: "30s",
            envoy_args: Vec::new(),
            rls_args: Vec::new(),
            edit_config: None,
        }
    }
}

pub struct Gateway {
    // Declared first: Envoy stops before the services it calls.
    pub envoy: Envoy,
    pub orders_v1: Upstream,
    pub orders_v2: Upstream,
    pub users: Upstream,
    pub products: Upstream,
    pub events: WebSocketEcho,
    pub grpc: GrpcService,
    pub access_log: PathBuf,
    /// The audit log: one JSON line per 401, 403 and 429.
    pub audit_log: PathBuf,
    /// The CA (PEM) that issued the TLS listener's certificate, made for this test.
    pub ca: PathBuf,
    pub _dir: tempfile::TempDir,
    pub _idp: JwksServer,
    pub rls: RateLimitService,
    pub _redis: RedisServer,
}

impl Gateway {
    pub async fn start(opts: Opts) -> Gateway {
        let redis = RedisServer::start().unwrap();
        let rls = RateLimitService::start(&redis.url(), RLS_CONFIG, &opts.rls_args)
            .await
            .unwrap();
        rls.wait_ready(Duration::from_secs(10)).await.unwrap();
        let idp = JwksServer::start(jwks(false)).await.unwrap();
        let orders_v1 = upstream(opts.orders_v1).await;
        let orders_v2 = upstream(opts.orders_v2).await;
        let users = upstream(opts.users).await;
        let products = upstream(opts.products).await;
        let events = WebSocketEcho::start().await.unwrap();
        let grpc = GrpcService::start().await;
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir(&cache_dir).unwrap();
        let access_log = dir.path().join("access.log");
        let audit_log = dir.path().join("audit.log");
        let ca = crate::tools::tls_certificate(dir.path(), "gateway.localhost").unwrap();
        let text = gateway_yaml();
        let text = opts
            .edit_config
            .map_or_else(|| text.clone(), |edit| edit(&text));
        let mut builder = EnvoyBuilder::new("gateway", &text)
            .var("ADMIN_PORT", 0)
            .var("GATEWAY_PORT", 0)
            .var("GATEWAY_TLS_PORT", 0)
            .var("GATEWAY_MTLS_PORT", 0)
            .var("CERT_DIR", dir.path().display())
            .var("ORDERS_V1_PORT", orders_v1.port())
            .var("ORDERS_V2_PORT", orders_v2.port())
            .var("USERS_PORT", opts.users_port.unwrap_or(users.port()))
            .var("PRODUCTS_PORT", products.port())
            .var("EVENTS_PORT", events.port)
            .var("GRPC_PORT", opts.grpc_port.unwrap_or(grpc.port))
            .var("CACHE_DIR", cache_dir.display())
            .var("JWKS_PORT", idp.port())
            .var("RLS_PORT", rls.grpc_port())
            .var("ROUTE_TIMEOUT", opts.route_timeout)
            .var("REPORT_TIMEOUT", opts.report_timeout)
            .var("ACCESS_LOG", access_log.display())
            .var("AUDIT_LOG", audit_log.display())
            .concurrency(1);
        // The wasm filters and the descriptor set, as the demo names them.
        for (var, file) in crate::demo::DIST_FILES {
            builder = builder.var(var, crate::tools::dist_bin(file).unwrap().display());
        }
        for arg in &opts.envoy_args {
            builder = builder.arg(arg);
        }
        let envoy = builder.start().await.unwrap();
        // jwt_auth fetches its keys when it starts; requests before that would wait for them.
        envoy
            .wait_stat_at_least(&custom(jwt_auth::metrics::JWKS_FETCH_SUCCESS), 1)
            .await
            .unwrap();
        // Hosts start unhealthy until their first active health check passes, and the worker
        // learns it a little after the admin stats do: probe every cluster through its route
        // (tenant `probe`, so no test's rate-limit counts move) until it answers.
        let probe = token("probe", "probe", "orders:read");
        for route in [
            "/api/v1/orders",
            "/api/v2/orders",
            "/api/orders/reports",
            "/api/users",
            "/api/products",
        ] {
            let url = envoy.url("gateway", &format!("{route}{PROBE}"));
            let (probe, url) = (&probe, &url);
            wait::until(
                &format!("{route} to answer"),
                Duration::from_secs(10),
                || async move {
                    let resp = client().get(url).bearer_auth(probe).send().await?;
                    Ok(resp.status().is_success().then_some(()))
                },
            )
            .await
            .unwrap();
        }
        Gateway {
            envoy,
            orders_v1,
            orders_v2,
            users,
            products,
            events,
            grpc,
            access_log,
            audit_log,
            ca,
            _dir: dir,
            _idp: idp,
            rls,
            _redis: redis,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.envoy.url("gateway", path)
    }

    /// The access log line of the request whose path (with query) contains `marker`, once
    /// Envoy has written it (it flushes the file about once a second).
    pub async fn access_line(&self, marker: &str) -> Value {
        log_line(&self.access_log, marker).await
    }

    /// The audit log line (401, 403, 429) of the request whose path contains `marker`.
    pub async fn audit_line(&self, marker: &str) -> Value {
        log_line(&self.audit_log, marker).await
    }

    /// A client for the TLS listener, as `https://gateway.localhost:<port>` (resolved to
    /// loopback): HTTP/2 by ALPN, or HTTP/1.1 only; trusting this test's CA or not.
    pub fn tls_client(&self, http1: bool, trust_ca: bool) -> reqwest::Client {
        self.tls_builder("gateway_tls", http1, trust_ca)
            .build()
            .unwrap()
    }

    /// A client for the mTLS listener (`https://gateway.localhost:<port>`) presenting the client
    /// certificate `<cert dir>/<name>.pem` with its key `<name>.key` (`partner-acme` is made
    /// for every gateway), or none.
    pub fn mtls_client(&self, identity: Option<&str>) -> reqwest::Client {
        let mut b = self.tls_builder("gateway_mtls", false, true);
        if let Some(name) = identity {
            let mut pem = std::fs::read(self.cert_dir().join(format!("{name}.pem"))).unwrap();
            pem.extend(std::fs::read(self.cert_dir().join(format!("{name}.key"))).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }

    /// `path` on the mTLS listener.
    pub fn mtls_url(&self, path: &str) -> String {
        let port = self.envoy.port("gateway_mtls");
        format!("https://gateway.localhost:{port}{path}")
    }

    /// A `method` request to `path` that reaches `route`: over the mTLS listener with the
    /// partner's certificate when the route needs a verified client certificate, else over the
    /// plain listener with the route's host. The route's exact headers are added.
    pub fn route_request(
        &self,
        route: &crate::gateway_config::Route,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let mut req = if route.needs_client_cert() {
            (self.mtls_client(Some("partner-acme"))).request(method, self.mtls_url(path))
        } else {
            (client().request(method, self.url(path))).header("host", route.host())
        };
        for (name, value) in route.exact_headers() {
            if !name.starts_with(':') {
                req = req.header(name, value);
            }
        }
        req
    }

    /// The directory of this gateway's TLS material (CERT_DIR).
    pub fn cert_dir(&self) -> &std::path::Path {
        self.ca.parent().unwrap()
    }

    fn tls_builder(&self, listener: &str, http1: bool, trust_ca: bool) -> reqwest::ClientBuilder {
        let port = self.envoy.port(listener);
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .resolve(
                "gateway.localhost",
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            );
        if trust_ca {
            let pem = std::fs::read(&self.ca).unwrap();
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        if http1 {
            b = b.http1_only();
        }
        b
    }

    /// A request with a valid token for user-1 of tenant acme (scope orders:read).
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        client()
            .get(self.url(path))
            .bearer_auth(token("user-1", "acme", "orders:read"))
    }

    pub fn post(&self, path: &str, scope: &str) -> reqwest::RequestBuilder {
        client()
            .post(self.url(path))
            .bearer_auth(token("user-1", "acme", scope))
            .header("content-type", "application/json")
            .body("{\"qty\":1}")
    }
}

pub use crate::ratelimit::limit_of;
pub use crate::tools::now;

/// A token the gateway's provider accepts (`jwt_auth::testing` keys, the gateway's issuer).
pub fn token(sub: &str, tenant: &str, scope: &str) -> String {
    let mut c = claims(now());
    c["iss"] = json!(ISSUER);
    c["sub"] = json!(sub);
    c["tenant"] = json!(tenant);
    c["scope"] = json!(scope);
    sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &c)
}

/// A client with 20 s per request (the gateway's slow routes take longer than the default).
pub fn client() -> reqwest::Client {
    crate::envoy::try_client(Duration::from_secs(20)).unwrap()
}

/// A cleartext HTTP/2 client (prior knowledge), 20 s per request.
pub fn h2c() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A gRPC channel to the gateway's plain listener.
pub async fn grpc_channel(gw: &Gateway) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(gw.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `grpc.health.v1.Health/Check` through the gateway with `metadata` (name, value): the
/// serving status, or the gRPC error.
pub async fn grpc_check(
    channel: &tonic::transport::Channel,
    metadata: &[(&str, &str)],
) -> Result<i32, tonic::Status> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut req = tonic::Request::new(HealthCheckRequest::default());
    for (name, value) in metadata {
        req.metadata_mut().insert(
            tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let reply = HealthClient::new(channel.clone()).check(req).await?;
    Ok(reply.into_inner().status)
}

pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// Status and JSON body.
pub async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Which service answered (the default handlers name themselves) and the path it saw.
pub async fn served(req: reqwest::RequestBuilder) -> (String, String) {
    let (status, body) = answer(req).await;
    assert_eq!(status, 200, "{body}");
    (
        body["service"].as_str().unwrap_or_default().to_string(),
        body["path"].as_str().unwrap_or_default().to_string(),
    )
}

/// Sends a POST with a `len`-byte body over a raw connection (chunked: without
/// content-length), writing the body in the background while the answer is read (Envoy may
/// answer before the body is all sent). Returns the status.
pub async fn raw_post(port: u16, path: &str, len: usize, chunked: bool) -> u16 {
    let auth = format!("Bearer {}", token("user-1", "acme", ""));
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/octet-stream"),
    ];
    status_of(&raw_upload(port, "gateway", path, &headers, len, chunked).await)
}

/// The status code of a response head.
pub fn status_of(head: &str) -> u16 {
    let line = head.lines().next().unwrap_or_default();
    line.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
}

/// [`raw_post`] with the host and headers given (the gateway's token is not added). Returns
/// the response head, lower-cased.
pub async fn raw_upload(
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    len: usize,
    chunked: bool,
) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let framing = if chunked {
        "transfer-encoding: chunked".to_string()
    } else {
        format!("content-length: {len}")
    };
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!("POST {path} HTTP/1.1\r\nhost: {host}\r\n{extra}{framing}\r\n\r\n");
    let (mut rd, mut wr) = stream.split();
    let write = async {
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            let sent = if chunked {
                let mut framed = format!("{n:x}\r\n").into_bytes();
                framed.extend_from_slice(&chunk[..n]);
                framed.extend_from_slice(b"\r\n");
                wr.write_all(&framed).await
            } else {
                wr.write_all(&chunk[..n]).await
            };
            if sent.is_err() {
                break;
            }
            left -= n;
        }
        if chunked {
            let _ = wr.write_all(b"0\r\n\r\n").await;
        }
        // Keep the write side open; the read side decides when we are done.
        std::future::pending::<()>().await
    };
    let read = async {
        let mut buf = Vec::new();
        let mut piece = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = rd.read(&mut piece).await.unwrap();
            assert!(n > 0, "connection closed before a response: {buf:?}");
            buf.extend_from_slice(&piece[..n]);
        }
        String::from_utf8_lossy(&buf).to_ascii_lowercase()
    };
    tokio::time::timeout(Duration::from_secs(15), async {
        tokio::select! {
            head = read => head,
            _ = write => unreachable!(),
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no response within 15 s to {len} bytes (chunked: {chunked})"))
}

/// The gRPC upstream: the standard health service (SERVING) and the demo inventory service over
/// HTTP/2, recording the metadata of every call (and the inventory, each call's message).
pub struct GrpcService {
    pub port: u16,
    pub metadata: Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>,
    pub inventory: crate::inventory::InventoryService,
    pub task: tokio::task::JoinHandle<()>,
}

impl GrpcService {
    pub async fn start() -> GrpcService {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let metadata = Arc::new(Mutex::new(Vec::new()));
        let seen = metadata.clone();
        let record = move |req: tonic::Request<()>| {
            seen.lock().unwrap().push(req.metadata().clone());
            Ok(req)
        };
        use tonic::service::interceptor::InterceptedService;
        let inventory = crate::inventory::InventoryService::default();
        let health = InterceptedService::new(health, record.clone());
        let inventory_server = InterceptedService::new(inventory.server(), record);
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _keep = reporter;
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .add_service(inventory_server)
                .serve_with_incoming(incoming)
                .await;
        });
        GrpcService {
            port,
            metadata,
            inventory,
            task,
        }
    }

    pub fn last(&self) -> tonic::metadata::MetadataMap {
        self.metadata
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the gRPC service got no call")
    }
}

impl Drop for GrpcService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The JSON line of `file` (an access log) whose `path` contains `marker`, waiting up to 10 s
/// for Envoy to write it.
async fn log_line(file: &std::path::Path, marker: &str) -> Value {
    wait::until("the log line", Duration::from_secs(10), || {
        let (file, marker) = (file.to_path_buf(), marker.to_string());
        async move {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            Ok(text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["path"].as_str().is_some_and(|p| p.contains(&marker))))
        }
    })
    .await
    .unwrap_or_else(|e| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        panic!(
            "{e}: no line with {marker:?} in {}; the last lines: {tail:#?}",
            file.display()
        )
    })
}

/// The shipped `envoy/gateway.yaml`, as text.
pub fn gateway_yaml() -> String {
    let path = crate::tools::repo_root().join("envoy/gateway.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
