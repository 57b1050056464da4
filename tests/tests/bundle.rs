//! dist/bundle.wasm (jwt_auth -> tenant_cache_key -> transform in one VM pass) in a real Envoy
//! next to the same three stages as separate filters: the same requests get the same answers
//! and the upstream sees the same headers. Keys come from a real JWKS endpoint (the first
//! request waits for the fetch, so the bundle's paused-request path runs too); tokens are made
//! at test time (`jwt_auth::testing`).

use gateway_tests::envoy::{client, custom, Envoy, EnvoyBuilder};
use gateway_tests::jwks::JwksServer;
use gateway_tests::stages;
use gateway_tests::tools::now;
use gateway_tests::upstream::{describe, read_head, Recorded, Reply, Upstream, WebSocketEcho};
use gateway_tests::{chain, tools, wait};
use jwt_auth::testing::{claims, jwks, sign};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A valid RS256 token; `edit` changes its claims.
fn token(edit: impl FnOnce(&mut Value)) -> String {
    let mut c = claims(now());
    edit(&mut c);
    sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &c)
}

/// The upstream: a user document with fields transform strips, the request it saw, a number
/// (the same number twice means the second answer came from Envoy's cache), and headers the
/// gateway removes. `/cached` answers are cacheable for a minute.
fn reply(r: &Recorded, n: usize) -> Reply {
    let body = json!({
        "n": n,
        "name": "Ada",
        "password_hash": "$2b$12$secret",
        "internal": { "shard": 7 },
        "seen": describe(r),
    });
    let mut reply = Reply::json(200, &body)
        .header("x-powered-by", "php")
        .header("x-upstream", "1");
    if r.path.starts_with("/api/cached") {
        reply = reply.header("cache-control", "max-age=60");
    }
    reply
}

async fn upstream() -> Upstream {
    Upstream::numbered(reply).await.unwrap()
}

/// Envoy from tests/envoy/bundle.yaml: `filters` (then Envoy's cache, when given a directory,
/// then the router) in front of the upstream, whose cluster runs `upstream_filters`.
async fn start(
    name: &str,
    (up, idp): (&Upstream, &JwksServer),
    mut filters: Vec<Value>,
    upstream_filters: Vec<Value>,
    cache: Option<&tempfile::TempDir>,
) -> Envoy {
    filters.extend(cache.map(|d| chain::file_cache(d.path())));
    EnvoyBuilder::from_repo_file(name, "tests/envoy/bundle.yaml")
        .unwrap()
        .var("UPSTREAM_PORT", up.port())
        .var("JWKS_PORT", idp.port())
        .var("HTTP_FILTERS", chain::with_router(filters))
        .var(
            "UPSTREAM_FILTERS",
            chain::with_upstream_codec(upstream_filters),
        )
        .start()
        .await
        .unwrap()
}

/// The three stages as separate filters, the response stage on the cluster.
async fn three_filters(up: &Upstream, idp: &JwksServer) -> Envoy {
    let tenant = tools::wasm("tenant_cache_key")
        .unwrap()
        .display()
        .to_string();
    let filters = vec![
        chain::wasm("jwt_auth", &stages::jwt_auth(&stages::remote_keys())).unwrap(),
        chain::wasm_at(
            "tenant_request",
            &tenant,
            &stages::tenant_request().to_string(),
        ),
        chain::wasm("transform", &stages::transform()).unwrap(),
    ];
    let response = chain::wasm_at(
        "tenant_response",
        &tenant,
        &stages::tenant_response().to_string(),
    );
    start("three-filters", (up, idp), filters, vec![response], None).await
}

/// The bundle, and the bundle with only the response stage on the cluster.
async fn bundle(up: &Upstream, idp: &JwksServer, cache: Option<&tempfile::TempDir>) -> Envoy {
    let wasm = tools::wasm("bundle").unwrap().display().to_string();
    let config = stages::bundle(&stages::remote_keys()).to_string();
    let filters = vec![chain::wasm_at("bundle", &wasm, &config)];
    let response = chain::wasm_at(
        "gateway_response",
        &wasm,
        &stages::bundle_response().to_string(),
    );
    start("bundle", (up, idp), filters, vec![response], cache).await
}

/// What a client and the upstream saw of one exchange, without what differs between two Envoys
/// anyway (request ids, timing headers, the upstream's request number).
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    /// Response headers a stage sets or removes.
    headers: Vec<(String, Option<String>)>,
    body: Value,
}

const RESPONSE_HEADERS: [&str; 7] = [
    "content-type",
    "cache-control",
    "www-authenticate",
    "x-gateway",
    "x-powered-by",
    "x-upstream",
    "vary",
];
const UPSTREAM_HEADERS: [&str; 9] = [
    "x-user-id",
    "x-tenant-id",
    "x-jwt-tenant",
    "x-org-id",
    "x-gateway-route",
    "authorization",
    "x-debug",
    ":path",
    "content-length",
];

async fn exchange(envoy: &Envoy, method: &str, path: &str, headers: &[(&str, &str)]) -> Seen {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(method, envoy.url("main", path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = RESPONSE_HEADERS
        .iter()
        .map(|n| {
            let v = resp
                .headers()
                .get(*n)
                .map(|v| v.to_str().unwrap().to_string());
            (n.to_string(), v)
        })
        .collect();
    let text = resp.text().await.unwrap();
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if let Some(obj) = body.as_object_mut() {
        obj.remove("n");
        obj.remove("request_id");
        if let Some(seen) = obj.remove("seen") {
            let kept: serde_json::Map<String, Value> = UPSTREAM_HEADERS
                .iter()
                .filter_map(|h| Some((h.to_string(), seen["headers"].get(*h)?.clone())))
                .collect();
            obj.insert("upstream_headers".into(), Value::Object(kept));
            obj.insert("upstream_path".into(), seen["path"].clone());
        }
    }
    Seen {
        status,
        headers,
        body,
    }
}

fn header<'a>(s: &'a Seen, name: &str) -> Option<&'a str> {
    s.headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
}

#[tokio::test]
async fn the_bundle_answers_like_the_three_filters() {
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up_three = upstream().await;
    let up_bundle = upstream().await;
    let three = three_filters(&up_three, &idp).await;
    let one = bundle(&up_bundle, &idp, None).await;

    let acme = format!("Bearer {}", token(|_| {}));
    let globex = format!(
        "Bearer {}",
        token(|c| {
            c["tenant"] = json!("globex");
            c["scope"] = json!("orders:read orders:write");
        })
    );
    let spoofed = [
        ("x-user-id", "mallory"),
        ("x-tenant-id", "evil"),
        ("x-jwt-tenant", "evil"),
        ("x-debug", "1"),
    ];
    fn with<'a>(spoofed: &[(&'a str, &'a str)], auth: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut h = spoofed.to_vec();
        h.push(("authorization", auth));
        h
    }
    let (acme, globex) = (acme.as_str(), globex.as_str());
    let cases = [
        (
            "valid token, spoofed identity",
            "GET",
            "/api/users/42",
            with(&spoofed, acme),
        ),
        ("no token", "GET", "/api/users/42", spoofed.to_vec()),
        ("missing scope", "POST", "/api/orders", with(&spoofed, acme)),
        (
            "tenant from the claim",
            "POST",
            "/api/orders",
            with(&spoofed, globex),
        ),
        (
            "public route, no token",
            "GET",
            "/api/v0/status",
            spoofed.to_vec(),
        ),
        (
            "default transform rule",
            "GET",
            "/api/products/1",
            with(&spoofed, acme),
        ),
    ];
    for (what, method, path, headers) in &cases {
        let a = exchange(&three, method, path, headers).await;
        let b = exchange(&one, method, path, headers).await;
        assert_eq!(a, b, "{what}: three filters vs the bundle");
    }
    assert_eq!(
        up_three.hits(),
        4,
        "the refused requests never reach the upstream"
    );
    assert_eq!(up_bundle.hits(), 4);

    // What they agree on is what the stages are for.
    let ok = exchange(&one, "GET", "/api/users/42", &with(&spoofed, acme)).await;
    assert_eq!(ok.status, 200);
    let up = &ok.body["upstream_headers"];
    assert_eq!(up["x-user-id"], json!(["user-1"]), "spoofed copy replaced");
    assert_eq!(
        up["x-tenant-id"],
        json!(["acme"]),
        "tenant from the verified claim"
    );
    assert_eq!(up["x-org-id"], json!(["7"]));
    assert_eq!(
        up["x-gateway-route"],
        json!(["users"]),
        "transform's request rule"
    );
    assert_eq!(
        up["authorization"],
        Value::Null,
        "the token is not forwarded"
    );
    assert!(ok.body.get("password_hash").is_none() && ok.body.get("internal").is_none());
    assert_eq!(ok.body["name"], "Ada");
    assert_eq!(header(&ok, "x-gateway"), Some("edgegate"));
    assert_eq!(header(&ok, "x-powered-by"), None);
    assert_eq!(
        header(&ok, "vary"),
        Some("x-tenant-id"),
        "the response stage on the cluster"
    );
    assert_eq!(
        header(&ok, "cache-control"),
        Some("private"),
        "the request stage: a credentialed answer leaves private"
    );

    let denied = exchange(&one, "GET", "/api/users/42", &spoofed).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.body["error"], "missing_token");
    assert_eq!(denied.headers[0].1.as_deref(), Some("application/json"));
    assert!(header(&denied, "www-authenticate").is_some_and(|w| w.starts_with("Bearer")));
    // A local reply only passes the filters before the one that sent it: transform, after
    // jwt_auth, never sees jwt_auth's refusal, in the bundle as with three filters.
    assert_eq!(header(&denied, "x-gateway"), None);

    let forbidden = exchange(&one, "POST", "/api/orders", &with(&spoofed, acme)).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.body["error"], "insufficient_scope");

    let globex_ok = exchange(&one, "POST", "/api/orders", &with(&spoofed, globex)).await;
    assert_eq!(globex_ok.status, 200);
    assert_eq!(
        globex_ok.body["upstream_headers"]["x-tenant-id"],
        json!(["globex"])
    );
    assert!(
        globex_ok.body.get("password_hash").is_some(),
        "no strip rule for orders"
    );

    let public = exchange(&one, "GET", "/api/v0/status", &spoofed).await;
    assert_eq!(public.status, 200);
    assert_eq!(
        public.body["upstream_headers"]["x-tenant-id"],
        Value::Null,
        "anonymous, not 'evil'"
    );
    assert_eq!(public.body["upstream_headers"]["x-user-id"], Value::Null);
    assert_eq!(public.body["upstream_headers"]["x-jwt-tenant"], Value::Null);

    // The bundle keeps the filters' counters.
    one.wait_stat_at_least(&custom(jwt_auth::metrics::ALLOWED), 4)
        .await
        .unwrap();
    one.wait_stat_at_least(
        &custom(&tenant_cache_key::metrics::resolved(
            tenant_cache_key::SourceKind::Claim,
        )),
        3,
    )
    .await
    .unwrap();
    one.wait_stat_at_least(&custom(transform::metrics::RULES_MATCHED), 2)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_post_body_passes_through_the_bundle_untouched() {
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up = upstream().await;
    let one = bundle(&up, &idp, None).await;
    let mut c = claims(now());
    c["scope"] = json!("orders:write");
    let auth = format!(
        "Bearer {}",
        sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &c)
    );
    let resp = client()
        .post(one.url("main", "/api/orders"))
        .header("authorization", auth)
        .json(&json!({"item": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().json(), json!({"item": 1}));
}

/// The bundle in front of Envoy's cache, its response stage (a bundle with only the
/// `tenant_cache_key` section, stage "response") as the cluster's upstream filter: responses
/// carry `Vary: x-tenant-id` before the cache stores them, so each tenant gets its own entry;
/// the bundle's request stage makes the client's copy private, on a miss and on a hit.
#[tokio::test]
async fn the_response_only_bundle_keys_the_cache_per_tenant() {
    let idp = JwksServer::start(jwks(false)).await.unwrap();
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let one = bundle(&up, &idp, Some(&dir)).await;
    let acme = format!("Bearer {}", token(|_| {}));
    let globex = format!("Bearer {}", token(|c| c["tenant"] = json!("globex")));
    let get = |auth: String| {
        let url = one.url("main", "/api/cached/report");
        async move {
            let resp = client()
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let cached = resp.headers().contains_key("age");
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            let (vary, cc) = (header("vary"), header("cache-control"));
            let body: Value = resp.json().await.unwrap();
            (body["n"].as_u64().unwrap(), cached, vary, cc)
        }
    };
    let (n1, cached, vary, cc) = get(acme.clone()).await;
    assert!(!cached);
    assert_eq!(vary.as_deref(), Some("x-tenant-id"));
    // The entry keeps its lifetime (the next request hits); the client's copy leaves private,
    // so a CDN in front never stores one tenant's answer.
    assert_eq!(cc.as_deref(), Some("private, max-age=60"));
    wait::until("1 cache entry written", Duration::from_secs(10), || async {
        Ok((one.cache_entries().await? >= 1).then_some(()))
    })
    .await
    .unwrap();
    let (n2, cached, _, cc) = get(acme.clone()).await;
    assert!(cached && n2 == n1, "acme's second request is a hit");
    assert_eq!(
        cc.as_deref(),
        Some("private, max-age=60"),
        "a hit leaves private too"
    );
    let (n3, cached, _, _) = get(globex).await;
    assert!(!cached && n3 != n1, "globex never gets acme's entry");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn a_bad_bundle_config_is_refused_with_its_reason() {
    let wasm = tools::wasm("bundle").unwrap().display().to_string();
    let mut bad_section = stages::bundle(&stages::remote_keys());
    bad_section["jwt_auth"]["providers"]["idp"]["remote_jwks"]["timeout"] = json!("soon");
    let mut unknown = stages::bundle(&stages::remote_keys());
    unknown["quota"] = json!({});
    let mut bad_ratelimit = stages::bundle(&stages::remote_keys());
    bad_ratelimit["ratelimit"] =
        json!({ "cluster": "ratelimit", "domain": "edge", "lease_size": 0 });
    let cases = [
        (unknown.to_string(), "field `quota`: unknown field `quota`"),
        (bad_ratelimit.to_string(), "field `ratelimit.lease_size`"),
        (
            bad_section.to_string(),
            "field `jwt_auth.providers.idp.remote_jwks.timeout`",
        ),
        (
            json!({"transform": null}).to_string(),
            "no stage is configured",
        ),
        ("{not json".to_string(), "invalid configuration"),
    ];
    for (config, expected) in cases {
        let (status, log) =
            EnvoyBuilder::from_repo_file("bundle-bad-config", "tests/envoy/bundle.yaml")
                .unwrap()
                .var(
                    "HTTP_FILTERS",
                    chain::with_router(vec![chain::wasm_at("bundle", &wasm, &config)]),
                )
                .var("UPSTREAM_FILTERS", chain::with_upstream_codec(vec![]))
                .var("UPSTREAM_PORT", 9)
                .var("JWKS_PORT", 9)
                .start_expecting_exit(Duration::from_secs(20))
                .await
                .unwrap();
        assert!(!status.success(), "Envoy accepted {config}");
        assert!(
            log.contains("bundle: refusing to start") && log.contains(expected),
            "expected {expected:?} in Envoy's log:\n{log}"
        );
    }
}

/// Opens /api/events with `token` (and a spoofed x-user-id, which jwt_auth replaces): the held
/// connection, or the refusal's status and JSON body.
async fn open_events(port: u16, token: &str) -> Result<TcpStream, (u16, Value)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET /api/events HTTP/1.1\r\nhost: gw\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         x-user-id: someone-else\r\nauthorization: Bearer {token}\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut conn))
        .await
        .unwrap()
        .unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if status == 101 {
        return Ok(conn);
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await.unwrap();
    Err((status, serde_json::from_slice(&body).unwrap()))
}

/// The bundle applies tenant_cache_key's stream caps as the plugin does: counted for the user
/// and tenant jwt_auth verified (a spoofed x-user-id changes nothing), refused with 429 over a
/// cap, freed when the stream ends.
#[tokio::test]
async fn the_bundle_caps_streams_per_verified_consumer_and_tenant() {
    let up = WebSocketEcho::start().await.unwrap();
    let up_port = up.port;
    let wasm = tools::wasm("bundle").unwrap().display().to_string();
    let mut config = stages::bundle(&stages::inline_keys(&jwks(false)));
    config["tenant_cache_key"]["streams"] = json!({
        "routes": [{ "match": { "path_prefix": "/api/events" } }],
        "per_consumer": 1,
        "per_tenant": 2,
    });
    let envoy = EnvoyBuilder::from_repo_file("bundle-streams", "tests/envoy/streams.yaml")
        .unwrap()
        .var(
            "HTTP_FILTERS",
            chain::with_router(vec![chain::wasm_at("bundle", &wasm, &config.to_string())]),
        )
        .var("UPSTREAM_PORT", up_port)
        .start()
        .await
        .unwrap();
    let port = envoy.port("main");
    let user = |sub: &'static str, tenant: &'static str| {
        token(move |c| {
            c["sub"] = json!(sub);
            c["tenant"] = json!(tenant);
        })
    };
    let refusal = |attempt: Result<TcpStream, (u16, Value)>, limit: &str, max: u64| {
        let Err((status, body)) = attempt else {
            panic!("a stream over the {limit} cap was opened");
        };
        assert_eq!(status, 429, "{body}");
        assert_eq!(
            (&body["error"], &body["limit"], &body["max"]),
            (&json!("too_many_streams"), &json!(limit), &json!(max)),
            "{body}"
        );
    };

    let first = open_events(port, &user("user-1", "acme")).await.unwrap();
    refusal(
        open_events(port, &user("user-1", "acme")).await,
        "consumer",
        1,
    );
    let second = open_events(port, &user("user-2", "acme")).await.unwrap();
    refusal(
        open_events(port, &user("user-3", "acme")).await,
        "tenant",
        2,
    );
    let globex = open_events(port, &user("user-1", "globex")).await.unwrap();
    assert_eq!(up.upgrades(), 3);

    drop(first);
    envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::STREAMS_RELEASED), 1)
        .await
        .unwrap();
    let again = open_events(port, &user("user-1", "acme")).await.unwrap();
    refusal(
        open_events(port, &user("user-3", "acme")).await,
        "tenant",
        2,
    );
    drop((second, globex, again));
    envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::STREAMS_RELEASED), 4)
        .await
        .unwrap();
    envoy
        .wait_stat_at_least(
            &custom(tenant_cache_key::metrics::STREAMS_REFUSED_TENANT),
            2,
        )
        .await
        .unwrap();
}
