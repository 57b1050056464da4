//! Per-tenant limits: rate limits by plan tier, and long-lived streams capped in flight per consumer and per tenant.

use crate::prelude::*;
use crate::support::{get, stack, Got, ACME_KEY, GLOBEX_KEY};

/// Plan tiers: free tenants get 3 requests an hour, pro tenants 6, each tenant its own bucket.
const TIERS: &str = "\
domain: edge
descriptors:
  - key: plan
    value: free
    descriptors:
      - key: tenant
        rate_limit: { unit: hour, requests_per_unit: 3 }
  - key: plan
    value: pro
    descriptors:
      - key: tenant
        rate_limit: { unit: hour, requests_per_unit: 6 }
";

/// `x-ratelimit-limit: 3, 3;w=3600` -> 3.
fn limit_of(got: &Got) -> Option<u64> {
    got.header("x-ratelimit-limit")?
        .split([',', ';'])
        .next()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn per_tenant_rate_limits_with_plan_tiers() {
    let s = stack(TIERS).await;
    // globex is on the free plan: 3 an hour.
    for i in 1..=3 {
        let got = get(&s.envoy, &format!("/api/{i}"), &[("x-api-key", GLOBEX_KEY)]).await;
        assert_eq!(got.status, 200, "globex request {i}");
        assert_eq!(limit_of(&got), Some(3), "globex request {i}");
    }
    let denied = get(&s.envoy, "/api/4", &[("x-api-key", GLOBEX_KEY)]).await;
    assert_eq!(denied.status, 429);

    // acme (pro, 6 an hour) is unaffected.
    let acme = get(&s.envoy, "/api/1", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(acme.status, 200);
    assert_eq!(limit_of(&acme), Some(6));
    assert_eq!(acme.header("x-ratelimit-remaining").as_deref(), Some("5"));

    // The bucket is the tenant's, whatever the client claims.
    let escapes: [&[(&str, &str)]; 2] = [
        &[("x-api-key", GLOBEX_KEY), ("x-tenant-id", "acme")],
        &[("x-api-key", GLOBEX_KEY), ("x-tenant-plan", "pro")],
    ];
    for headers in escapes {
        let got = get(&s.envoy, "/api/5", headers).await;
        assert_eq!(got.status, 429, "{headers:?}");
    }
    // A Host header naming a keyed tenant neither drains nor shares its bucket: host tenants
    // are `~<id>`, each with its own bucket at the host source's plan, like any other host.
    for i in 1..=3 {
        let got = get(&s.envoy, "/api/6", &[("host", "acme.api.example.com")]).await;
        assert_eq!(got.status, 200, "host acme request {i}");
        assert_eq!(limit_of(&got), Some(3), "the host source's free plan");
    }
    let acme = get(&s.envoy, "/api/2", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(
        acme.header("x-ratelimit-remaining").as_deref(),
        Some("4"),
        "acme's keyed bucket only counted acme's keyed requests"
    );
    let globex_host = get(&s.envoy, "/api/7", &[("host", "globex.api.example.com")]).await;
    assert_eq!(globex_host.status, 200, "not globex's exhausted bucket");
    // Another free tenant has its own bucket.
    let other = get(&s.envoy, "/api/1", &[("host", "initech.api.example.com")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(limit_of(&other), Some(3));
    s.envoy
        .wait_stat_at_least("cluster.upstream.ratelimit.over_limit", 3)
        .await
        .unwrap();
}

/// What a refused stream got back.
#[derive(Debug)]
struct Refusal {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

/// Opens a WebSocket on its own connection as `user` of `tenant` (the claim header stands in
/// for jwt_auth's): the held connection, or the refusal.
async fn open_stream(
    port: u16,
    path: &str,
    tenant: &str,
    user: &str,
) -> Result<TcpStream, Refusal> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: gw.example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         x-jwt-tenant: {tenant}\r\nx-user-id: {user}\r\nx-request-id: {tenant}-{user}\r\n\r\n"
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
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(|v| v.trim().to_string())
    };
    let mut body = vec![0u8; header("content-length").unwrap().parse().unwrap()];
    conn.read_exact(&mut body).await.unwrap();
    Err(Refusal {
        status,
        retry_after: header("retry-after"),
        body: serde_json::from_slice(&body).unwrap(),
    })
}

fn held(attempt: Result<TcpStream, Refusal>, what: &str) -> TcpStream {
    attempt.unwrap_or_else(|r| panic!("{what}: refused: {r:?}"))
}

/// The refusal of a stream over a cap, checked whole.
fn assert_refused(attempt: Result<TcpStream, Refusal>, limit: &str, max: u64, request_id: &str) {
    let Err(r) = attempt else {
        panic!("{request_id}: a stream over the {limit} cap was opened");
    };
    let message = format!("this {limit} already holds as many open streams as it may");
    assert_eq!(
        (r.status, r.retry_after.as_deref()),
        (429, Some("5")),
        "{request_id}"
    );
    assert_eq!(
        r.body,
        json!({
            "error": "too_many_streams",
            "limit": limit,
            "max": max,
            "message": message,
            "request_id": request_id,
        })
    );
}

/// Finding 7: one user of one tenant opened 256 idle WebSockets, each well within every rate
/// limit, filled the shared circuit breakers and took the events and gRPC services away from
/// every tenant for as long as it held them. Long-lived streams are now capped in flight, per
/// consumer and per tenant, counted across Envoy's two workers here, and a slot is freed when
/// its stream ends — closed by the client or by Envoy — exactly once.
#[tokio::test]
async fn long_lived_streams_are_capped_in_flight_per_consumer_and_per_tenant() {
    let up = WebSocketEcho::start().await.unwrap();
    let filter = chain::wasm(
        "tenant_cache_key",
        &json!({
            "stage": "request",
            "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
            "streams": {
                "routes": [
                    { "match": { "path_prefix": "/events" } },
                    { "match": { "path_prefix": "/idle" } }
                ],
                "per_consumer": 2,
                "per_tenant": 3
            }
        }),
    )
    .unwrap();
    let envoy = EnvoyBuilder::from_repo_file("tenant-streams", "tests/envoy/streams.yaml")
        .unwrap()
        .var("HTTP_FILTERS", chain::with_router(vec![filter]))
        .var("UPSTREAM_PORT", up.port)
        .concurrency(2)
        .start()
        .await
        .unwrap();
    let port = envoy.port("main");
    let open = |path: &'static str, tenant: &'static str, user: &'static str| {
        open_stream(port, path, tenant, user)
    };

    let mut alice = Vec::new();
    for i in 0..2 {
        alice.push(held(
            open("/events", "acme", "alice").await,
            &format!("alice {i}"),
        ));
    }
    assert_refused(
        open("/events", "acme", "alice").await,
        "consumer",
        2,
        "acme-alice",
    );
    // Requests that are not streams are not capped.
    let other = get(
        &envoy,
        "/other",
        &[("x-jwt-tenant", "acme"), ("x-user-id", "alice")],
    )
    .await;
    assert_eq!(other.status, 200);
    // Another consumer of the tenant gets through until the tenant's cap.
    let bob = held(open("/events", "acme", "bob").await, "bob");
    assert_refused(
        open("/events", "acme", "bob").await,
        "tenant",
        3,
        "acme-bob",
    );
    assert_refused(
        open("/events", "acme", "carol").await,
        "tenant",
        3,
        "acme-carol",
    );
    // Another tenant is not affected, whatever its users are called.
    let globex = [
        held(open("/events", "globex", "dave").await, "dave of globex"),
        held(open("/events", "globex", "alice").await, "alice of globex"),
    ];

    // Closed by the client: the slot is free again, once.
    drop(alice.pop());
    envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::STREAMS_RELEASED), 1)
        .await
        .unwrap();
    alice.push(held(open("/events", "acme", "alice").await, "alice again"));
    assert_refused(
        open("/events", "acme", "carol").await,
        "tenant",
        3,
        "acme-carol",
    );

    // Ended by Envoy (the route's idle timeout): released too.
    let mut erin = Vec::new();
    for i in 0..2 {
        erin.push(held(
            open("/idle", "initech", "erin").await,
            &format!("erin {i}"),
        ));
    }
    assert_refused(
        open("/idle", "initech", "erin").await,
        "consumer",
        2,
        "initech-erin",
    );
    for conn in &mut erin {
        let mut buf = [0u8; 64];
        let end = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await;
        assert!(
            matches!(end, Ok(Ok(0) | Err(_))),
            "Envoy ends an idle stream: {end:?}"
        );
    }
    envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::STREAMS_RELEASED), 3)
        .await
        .unwrap();
    let erin_again = held(open("/idle", "initech", "erin").await, "erin again");
    assert_eq!(up.upgrades(), 9, "refused streams never reach the upstream");

    // Everything closed: every slot is free, and each was freed exactly once.
    drop((alice, bob, globex, erin, erin_again));
    wait::until("no stream in flight", Duration::from_secs(10), || async {
        let active = streams_active(&envoy).await;
        Ok((active == Some(0)).then_some(()))
    })
    .await
    .unwrap();
    let again = [
        held(open("/events", "acme", "alice").await, "alice at the end"),
        held(open("/events", "acme", "alice").await, "alice at the end"),
        held(open("/events", "acme", "bob").await, "bob at the end"),
    ];
    assert_refused(
        open("/events", "acme", "carol").await,
        "tenant",
        3,
        "acme-carol",
    );
    drop(again);
    for (stat, min) in [
        (custom(tenant_cache_key::metrics::STREAMS_ADMITTED), 12),
        (
            custom(tenant_cache_key::metrics::STREAMS_REFUSED_CONSUMER),
            2,
        ),
        (custom(tenant_cache_key::metrics::STREAMS_REFUSED_TENANT), 4),
    ] {
        envoy.wait_stat_at_least(&stat, min).await.unwrap();
    }
}

/// Streams in flight over every worker (the gauge each VM adds to).
async fn streams_active(envoy: &Envoy) -> Option<u64> {
    envoy
        .stat(&custom(tenant_cache_key::metrics::STREAMS_ACTIVE))
        .await
        .unwrap()
}
