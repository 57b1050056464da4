//! Policy by route: the filters take their policies from the route Envoy matched
//! (`edgegate.*` route metadata), and a forwarding route that names none is refused.
//!
//! Table-driven from `envoy/gateway.yaml` itself: every route gets a request without a token
//! and must give exactly the outcome its policy names, and the access log must show that Envoy
//! matched that route. Requests Envoy normalises (slashes, dot segments, host case and ports,
//! custom methods, absolute-form targets, HTTP/2) are decided by the route Envoy chose.

use super::prelude::*;
use gateway_tests::gateway_config::{GatewayConfig, Route};
use gateway_tests::policy_check;

/// An answer read off the wire.
struct Answer {
    status: u16,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 request (`head` without the final blank line): its answer's head, and its
/// body (by content-length) as JSON (`Null` when it is not).
async fn raw(gw: &Gateway, head: &str) -> Answer {
    raw_with_body(gw, head, &[]).await
}

/// [`raw`] with a body (content-length added). Envoy may answer and close before all of it is
/// written: a failed write is not an error, the answer is what counts.
async fn raw_with_body(gw: &Gateway, head: &str, body: &[u8]) -> Answer {
    let mut conn = TcpStream::connect(("127.0.0.1", gw.envoy.port("gateway")))
        .await
        .unwrap();
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("content-length: {}\r\n", body.len())
    };
    conn.write_all(format!("{head}{length}\r\n").as_bytes())
        .await
        .unwrap();
    let _ = conn.write_all(body).await;
    let no_body = head.starts_with("HEAD ");
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = (head.lines())
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length || no_body {
                    return text;
                }
            }
            let n = conn.read(&mut chunk).await.unwrap();
            if n == 0 {
                return String::from_utf8_lossy(&buf).to_string();
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = (lines.next().unwrap_or("").split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// A request to a route Envoy matches only over a verified client certificate: to the mTLS
/// listener with the partner's certificate, no token.
async fn over_mtls(gw: &Gateway, route: &Route, method: &str, n: usize) -> Answer {
    let path = format!("{}?policy={n}", route.sample_path());
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = gw.route_request(route, method, &path).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = (resp.headers().iter())
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// The method a request needs to reach `route` rather than a route before it: the first
/// alternative of its `:method` condition; POST for the write route that follows a read route
/// of the same path; GET otherwise.
fn method_for(route: &Route, before: Option<&Route>) -> String {
    let m = &route.raw["match"];
    if let Some(h) =
        (m["headers"].as_sequence().into_iter().flatten()).find(|h| h["name"] == ":method")
    {
        let regex = h["string_match"]["safe_regex"]["regex"]
            .as_str()
            .unwrap_or("GET");
        return regex.split('|').next().unwrap_or("GET").to_string();
    }
    let same_path = before.is_some_and(|b| {
        b.raw["match"]["prefix"] == m["prefix"]
            && b.raw["match"]["path_separated_prefix"] == m["path_separated_prefix"]
    });
    if same_path { "POST" } else { "GET" }.to_string()
}

/// The request head for `route`, without a token, marked `policy=<n>` in its query.
fn head_for(route: &Route, method: &str, n: usize) -> String {
    let mut head = format!(
        "{method} {}?policy={n} HTTP/1.1\r\nhost: {}\r\n",
        route.sample_path(),
        route.host()
    );
    for (name, value) in route.exact_headers() {
        if !name.starts_with(':') {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if route.is_upgrade() {
        // (`upgrade: websocket` is one of the route's exact headers.)
        head.push_str("connection: upgrade\r\nsec-websocket-version: 13\r\n");
        head.push_str("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    }
    if route.is_grpc() {
        head.push_str("content-type: application/grpc\r\nte: trailers\r\n");
    }
    head
}

/// The body to send: more than the 1 MiB limit for the route that refuses it by its
/// content-length (the buffer filter holds the headers until the body comes).
fn body_for(route: &Route) -> Vec<u8> {
    if route.matches_on_content_length() {
        vec![b'x'; 1_048_577]
    } else {
        Vec::new()
    }
}

/// The gateway with its access log flushed every 50 ms (each check reads it back).
fn quick_log() -> Opts {
    Opts {
        envoy_args: vec!["--file-flush-interval-msec", "50"],
        ..Opts::default()
    }
}

/// Requests every upstream has answered so far (probes left out).
fn upstream_count(gw: &Gateway) -> usize {
    [&gw.orders_v1, &gw.orders_v2, &gw.users, &gw.products]
        .iter()
        .map(|u| api_requests(u).len())
        .sum()
}

#[tokio::test]
async fn every_route_gives_a_request_without_a_token_exactly_what_its_policy_names() {
    let gw = Gateway::start(quick_log()).await;
    let routes = GatewayConfig::load().routes();
    let mut checked = 0;
    for (n, route) in routes.iter().enumerate() {
        let before = n
            .checked_sub(1)
            .map(|i| &routes[i])
            .filter(|b| b.vhost == route.vhost);
        let method = method_for(route, before);
        let upstream_before = upstream_count(&gw);
        let answer = if route.needs_client_cert() {
            over_mtls(&gw, route, &method, n).await
        } else {
            raw_with_body(&gw, &head_for(route, &method, n), &body_for(route)).await
        };
        let (status, body) = (answer.status, &answer.body);
        let policy = route.raw["metadata"]["filter_metadata"]["edgegate"]["jwt"].as_str();
        let what = format!("{method} {}: {status} {body}", route.describe());
        match (route.is_direct(), policy) {
            (true, _) => {
                let expect = route.raw["direct_response"]["status"].as_u64().unwrap();
                assert_eq!(u64::from(status), expect, "{what}");
            }
            (false, Some("public")) => assert!(status < 400, "{what}"),
            // Envoy turns a local reply to a gRPC request into a trailers-only gRPC answer.
            (false, Some(_)) if route.is_grpc() => {
                assert_eq!(
                    answer.header("grpc-status"),
                    Some("16"),
                    "{what}: UNAUTHENTICATED"
                );
            }
            (false, Some(_)) => {
                assert_eq!(
                    (status, body["error"].as_str()),
                    (401, Some("missing_token")),
                    "{what}"
                );
            }
            (false, None) => {
                assert_eq!(
                    (status, body["error"].as_str()),
                    (403, Some("forbidden")),
                    "{what}"
                );
            }
        }
        if !route.is_direct() && policy != Some("public") {
            assert_eq!(
                upstream_count(&gw),
                upstream_before,
                "{what}: an upstream saw it"
            );
        }
        // Envoy matched this route: the access log names its route and its jwt policy.
        let line = gw.access_line(&format!("policy={n}")).await;
        assert_eq!(line["jwt_policy"].as_str(), policy, "{what}: {line}");
        if let Some(name) = route.name() {
            assert_eq!(line["route"], name.as_str(), "{what}: {line}");
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} routes");
}

/// The route `admin`, forwarding to the users service, inserted before the users route, with
/// no policy.
fn with_admin_route(text: &str) -> String {
    let at = text
        .find("              - name: users\n")
        .expect("the users route");
    let admin = "              - name: admin\n                match: { path_separated_prefix: \"/api/admin\" }\n                route: { cluster: users, prefix_rewrite: \"/users\", timeout: 8s }\n";
    format!("{}{admin}{}", &text[..at], &text[at..])
}

#[tokio::test]
async fn a_route_added_without_a_policy_is_refused_and_the_checker_names_it() {
    let edited = with_admin_route(&gateway_yaml());
    let findings = policy_check::check(&edited).unwrap();
    let line = edited
        .lines()
        .position(|l| l.trim() == "- name: admin")
        .unwrap()
        + 1;
    let admin: Vec<_> = findings
        .iter()
        .filter(|f| f.route.contains("\"admin\""))
        .collect();
    assert_eq!(admin.len(), 2, "{findings:#?}");
    assert!(admin.iter().all(|f| f.line == Some(line)), "{admin:#?}");
    assert!(
        admin[0]
            .message
            .contains("without an authentication decision"),
        "{admin:#?}"
    );
    assert!(
        admin[1].message.contains("without a tenant policy"),
        "{admin:#?}"
    );
    assert_eq!(findings.len(), 2, "nothing else: {findings:#?}");

    let gw = Gateway::start(Opts {
        edit_config: Some(with_admin_route),
        ..Opts::default()
    })
    .await;
    let resp = gw.get("/api/admin/1").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "forbidden", "{body}");
    assert_eq!(
        body["message"],
        "no authentication policy applies to this route"
    );
    assert!(
        api_requests(&gw.users).is_empty(),
        "the users service saw it"
    );
}

#[test]
fn the_shipped_config_passes_the_checker_and_bad_bindings_are_named() {
    let text = gateway_yaml();
    assert_eq!(policy_check::check(&text).unwrap(), vec![]);
    let cases = [
        ("jwt: user, tenant: tenant, transform: users", "jwt: admins, tenant: tenant, transform: users", "names \"admins\", which jwt_auth does not define"),
        ("jwt: user, tenant: tenant, transform: users", "jwt: 3, tenant: tenant, transform: users", "edgegate.jwt: must be a policy name"),
        ("jwt: user, tenant: tenant, transform: users", "jwt: user, tenant: tenant, transform: users, cors: x", "edgegate.cors: no edgegate filter reads this key"),
        (
            "jwt: user, tenant: tenant, transform: users",
            "jwt: user, tenant: tenant, transform: users, ratelimit: standard",
            "edgegate.ratelimit is ignored: ratelimit binds routes by name",
        ),
        ("\"user\": { \"requires\"", "\"unused\": { \"requires\": { \"provider_name\": \"idp\" } }, \"user\": { \"requires\"", "requirements.unused is defined but no route names it"),
    ];
    for (from, to, expect) in cases {
        assert_eq!(text.matches(from).count(), 1, "{from}");
        let findings = policy_check::check(&text.replacen(from, to, 1)).unwrap();
        assert!(
            findings.iter().any(|f| f.to_string().contains(expect)),
            "{to}: {findings:#?}"
        );
    }
}

/// What Envoy did with one request, from its access log line and the upstreams.
struct Seen {
    status: u16,
    policy: String,
    cluster: String,
    /// The `x-user-id` the upstream that answered saw (None: no upstream saw it).
    user: Option<String>,
}

async fn seen(gw: &Gateway, marker: &str, status: u16) -> Seen {
    let line = gw.access_line(marker).await;
    let arrived: Vec<Recorded> = [&gw.orders_v1, &gw.orders_v2, &gw.users, &gw.products]
        .iter()
        .flat_map(|u| api_requests(u))
        .filter(|r| r.path.contains(marker))
        .collect();
    assert!(
        arrived.len() <= 1,
        "{marker}: {} upstream requests",
        arrived.len()
    );
    Seen {
        status,
        policy: line["jwt_policy"].as_str().unwrap_or("none").to_string(),
        cluster: line["upstream_cluster"].as_str().unwrap_or("").to_string(),
        user: arrived
            .first()
            .map(|r| r.header("x-user-id").unwrap_or_default()),
    }
}

/// The decision is always the one of the route Envoy chose: a write route refuses the
/// orders:read token (403, nothing upstream), a read route lets it through to the cluster the
/// route names with the verified user, no route (`none`) is Envoy's 404.
fn assert_decided_by_route(what: &str, s: &Seen) {
    match s.policy.as_str() {
        "orders_write" => assert_eq!((s.status, s.user.as_deref()), (403, None), "{what}"),
        "user" => {
            assert_eq!(
                (s.status, s.user.as_deref()),
                (200, Some("user-1")),
                "{what}"
            );
            assert!(
                s.cluster != "-" && !s.cluster.is_empty(),
                "{what}: {}",
                s.cluster
            );
        }
        "none" => assert!(s.user.is_none() && s.status >= 400, "{what}: {}", s.status),
        other => panic!("{what}: unexpected policy {other}"),
    }
}

#[tokio::test]
async fn requests_envoy_normalises_are_decided_by_the_route_envoy_chose() {
    let gw = Gateway::start(quick_log()).await;
    let bearer = token("user-1", "acme", "orders:read");
    // (method, request target, host, the policy Envoy's route must have had)
    let cases = [
        ("GET", "//api//users/7", "gateway.localhost", "user"),
        ("GET", "/api/./users/7", "gateway.localhost", "user"),
        ("GET", "/api/users/../orders/7", "gateway.localhost", "user"),
        (
            "POST",
            "/api/users/../orders/7",
            "gateway.localhost",
            "orders_write",
        ),
        ("POST", "/api//orders", "gateway.localhost", "orders_write"),
        (
            "PURGE",
            "/api/orders/7",
            "gateway.localhost",
            "orders_write",
        ),
        ("HEAD", "/api/orders/7", "gateway.localhost", "user"),
        ("GET", "/orders/7", "ORDERS.API.LOCALHOST", "user"),
        (
            "POST",
            "/orders/7",
            "orders.api.localhost:8080",
            "orders_write",
        ),
        ("GET", "/orders/7", "orders.api.localhost.", "user"),
        (
            "GET",
            "http://orders.api.localhost/orders/7",
            "gateway.localhost",
            "user",
        ),
        (
            "POST",
            "http://orders.api.localhost/orders/7",
            "gateway.localhost",
            "orders_write",
        ),
        ("POST", "/api/%6Frders/7", "gateway.localhost", ""),
        ("GET", "/api/%2e/users/7", "gateway.localhost", ""),
        ("GET", "/API/orders/7", "gateway.localhost", "none"),
    ];
    for (n, (method, target, host, expect)) in cases.into_iter().enumerate() {
        let marker = format!("norm={n}");
        let sep = if target.contains('?') { '&' } else { '?' };
        let head = format!(
            "{method} {target}{sep}{marker} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {bearer}\r\ncontent-length: 0\r\n"
        );
        let status = raw(&gw, &head).await.status;
        let s = seen(&gw, &marker, status).await;
        let what = format!(
            "{method} {target} host {host}: {status}, route policy {}",
            s.policy
        );
        if !expect.is_empty() {
            assert_eq!(s.policy, expect, "{what}");
        }
        assert_decided_by_route(&what, &s);
    }
    // A method in lower case is not a method to Envoy's codec: 400 before any filter or route.
    let head = format!("get /api/orders/7?lower HTTP/1.1\r\nhost: gateway.localhost\r\nauthorization: Bearer {bearer}\r\n");
    assert_eq!(raw(&gw, &head).await.status, 400);
    // HTTP/2: the :authority picks the virtual host.
    let port = gw.envoy.port("gateway");
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .resolve(
            "orders.api.localhost",
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .unwrap();
    for (n, (method, expect)) in [("GET", "user"), ("DELETE", "orders_write")]
        .into_iter()
        .enumerate()
    {
        let marker = format!("h2={n}");
        let url = format!("http://orders.api.localhost:{port}/orders/7?{marker}");
        let resp = h2
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let s = seen(&gw, &marker, resp.status().as_u16()).await;
        let what = format!("h2 {method} :authority orders.api.localhost: {}", s.status);
        assert_eq!(s.policy, expect, "{what}");
        assert_decided_by_route(&what, &s);
    }
}
