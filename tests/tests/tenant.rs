//! Tenant isolation end to end: the shipped `envoy/tenant-cache.yaml` (tenant_cache_key.wasm as
//! a request-stage filter before Envoy's rate limit and cache filters, and as a response-stage
//! upstream filter on the cluster) in a real Envoy 1.40, with the real `dist/ratelimit-service`
//! on a real Redis, in front of a scripted upstream that echoes the tenant it was sent.
//!
//! The cache stores entries asynchronously (FileSystemHttpCache writes files on a thread pool):
//! a test that expects a hit first waits for the cache's entry-count gauge, never on a sleep.

use gateway_tests::chain;
use gateway_tests::envoy::{client, custom, single_upstream, Envoy, EnvoyBuilder};
use gateway_tests::ratelimit::RateLimitService;
use gateway_tests::redis::RedisServer;
use gateway_tests::tools;
use gateway_tests::upstream::{read_head, Recorded, Reply, Upstream, WebSocketEcho};
use gateway_tests::wait;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The demo keys of the shipped config (their SHA-256 digests are in the YAML).
const ACME_KEY: &str = "demo-key-acme";
const GLOBEX_KEY: &str = "demo-key-globex";

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

/// No limits at all (tests about caching).
const NO_LIMITS: &str = "\
domain: edge
descriptors:
  - key: unused
    rate_limit: { unit: hour, requests_per_unit: 1 }
";

/// What the upstream answers: a JSON echo of the tenant it saw, numbered so that a cached
/// answer is recognisable, with caching headers chosen by the path.
fn reply(r: &Recorded, n: usize) -> Reply {
    let body = json!({
        "n": n,
        "tenant": r.header_all("x-tenant-id"),
        "plan": r.header("x-tenant-plan"),
        "api_key_seen": r.header("x-api-key").is_some(),
        "cache_control_seen": r.header("cache-control"),
        // What an upstream personalises on: the user and the org it was told about.
        "user": r.header("x-user-id"),
        "org": r.header("x-org-id"),
    });
    let mut reply = Reply::json(200, &body);
    let path = r.path.as_str();
    if path.contains("no-store") {
        reply = reply.header("cache-control", "no-store");
    } else if path.contains("shared") {
        // An upstream that invites shared caches (a CDN) to store the answer.
        reply = reply.header("cache-control", "public, max-age=60, s-maxage=600");
    } else if !path.starts_with("/catalog") {
        // /catalog answers without Cache-Control: the route table decides.
        reply = reply.header("cache-control", "max-age=60");
    }
    if path.starts_with("/vary-ae") {
        reply = reply.header("vary", "Accept-Encoding");
    } else if path.starts_with("/vary-star") {
        reply = reply.header("vary", "*");
    } else if path.starts_with("/vary-tenant") {
        reply = reply.header("vary", "X-Tenant-Id");
    }
    reply
}

async fn numbered_upstream() -> Upstream {
    Upstream::numbered(reply).await.unwrap()
}

/// Redis, the rate limit service, the upstream and Envoy running `envoy/tenant-cache.yaml`.
struct Stack {
    envoy: Envoy,
    up: Upstream,
    _rls: RateLimitService,
    _redis: RedisServer,
    _cache_dir: tempfile::TempDir,
}

async fn stack(limits: &str) -> Stack {
    let redis = RedisServer::start().unwrap();
    let rls = RateLimitService::start(&redis.url(), limits, &[])
        .await
        .unwrap();
    rls.wait_ready(Duration::from_secs(10)).await.unwrap();
    let up = numbered_upstream().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let envoy = EnvoyBuilder::from_repo_file("tenant-cache", "envoy/tenant-cache.yaml")
        .unwrap()
        .var("ADMIN_PORT", 0)
        .var("LISTEN_PORT", 0)
        .var("UPSTREAM_PORT", up.port())
        .var("RLS_PORT", rls.grpc_port())
        .var("CACHE_DIR", cache_dir.path().display())
        .wasm("TENANT_CACHE_KEY_WASM", "tenant_cache_key")
        .unwrap()
        .start()
        .await
        .unwrap();
    Stack {
        envoy,
        up,
        _rls: rls,
        _redis: redis,
        _cache_dir: cache_dir,
    }
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Got {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The upstream's request number: the same number twice means the second came from the cache.
    fn n(&self) -> u64 {
        self.body["n"]
            .as_u64()
            .unwrap_or_else(|| panic!("no upstream echo (status {}): {}", self.status, self.body))
    }

    fn tenant(&self) -> Vec<String> {
        serde_json::from_value(self.body["tenant"].clone()).unwrap()
    }

    fn served_by_cache(&self) -> bool {
        self.headers.contains_key("age")
    }
}

async fn get(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().get(envoy.url("main", path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Got {
        status,
        headers,
        body,
    }
}

/// Entries the file-system cache has finished writing.
async fn cache_entries(envoy: &Envoy) -> u64 {
    envoy.cache_entries().await.unwrap()
}

async fn wait_cache_entries(envoy: &Envoy, n: u64) {
    wait::until(
        &format!("{n} cache entries written"),
        Duration::from_secs(10),
        || async { Ok((cache_entries(envoy).await >= n).then_some(())) },
    )
    .await
    .unwrap();
}

async fn cache_hits(envoy: &Envoy) -> u64 {
    envoy
        .stat_sum(r"^cache\.event\..*event_type\.hit$")
        .await
        .unwrap()
}

#[tokio::test]
async fn each_tenant_gets_its_own_entry_and_repeats_come_from_the_cache() {
    let s = stack(NO_LIMITS).await;
    let acme = get(&s.envoy, "/items?page=1", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(acme.status, 200);
    assert_eq!(acme.tenant(), ["acme"]);
    assert_eq!(acme.body["plan"], "pro");
    assert_eq!(
        acme.body["api_key_seen"], false,
        "the key was consumed before the upstream"
    );
    assert_eq!(acme.header_all("vary"), ["x-tenant-id"]);
    assert!(!acme.served_by_cache());
    wait_cache_entries(&s.envoy, 1).await;

    let globex = get(&s.envoy, "/items?page=1", &[("x-api-key", GLOBEX_KEY)]).await;
    assert_eq!(globex.tenant(), ["globex"], "{}", globex.body);
    assert_ne!(globex.n(), acme.n(), "globex never gets acme's entry");
    assert!(!globex.served_by_cache());
    wait_cache_entries(&s.envoy, 2).await;
    assert_eq!(s.up.hits(), 2);

    for (key, first) in [(ACME_KEY, &acme), (GLOBEX_KEY, &globex)] {
        let again = get(&s.envoy, "/items?page=1", &[("x-api-key", key)]).await;
        assert_eq!(again.body, first.body, "{key}: its own cached body");
        assert!(again.served_by_cache(), "{key}: `age` on a cache hit");
    }
    assert_eq!(s.up.hits(), 2, "both repeats were served by the cache");
    assert_eq!(cache_hits(&s.envoy).await, 2);

    // No credential: the anonymous variant, a third entry.
    let anonymous = get(&s.envoy, "/items?page=1", &[]).await;
    assert!(anonymous.tenant().is_empty());
    assert!(!anonymous.served_by_cache());
    assert_eq!(s.up.hits(), 3);

    s.envoy
        .wait_stat_at_least(
            &custom(&tenant_cache_key::metrics::resolved(
                tenant_cache_key::SourceKind::ApiKey,
            )),
            4,
        )
        .await
        .unwrap();
    s.envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::VARY_ADDED), 3)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_forged_tenant_header_gets_the_real_tenants_response() {
    let s = stack(NO_LIMITS).await;
    let acme = get(&s.envoy, "/orders", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(acme.tenant(), ["acme"]);
    wait_cache_entries(&s.envoy, 1).await;

    // Globex claims to be acme: its own key decides.
    let forged = [
        ("x-api-key", GLOBEX_KEY),
        ("x-tenant-id", "acme"),
        ("x-tenant-plan", "enterprise"),
    ];
    let globex = get(&s.envoy, "/orders", &forged).await;
    assert_eq!(
        globex.tenant(),
        ["globex"],
        "exactly one tenant header, the real one"
    );
    assert_eq!(globex.body["plan"], "free", "the forged plan is gone too");
    assert_ne!(globex.n(), acme.n());
    wait_cache_entries(&s.envoy, 2).await;
    let again = get(&s.envoy, "/orders", &forged).await;
    assert!(again.served_by_cache());
    assert_eq!(again.body, globex.body, "globex's entry, never acme's");

    // No credential at all: forging gets the anonymous variant, not acme's entry.
    let anonymous = get(&s.envoy, "/orders", &[("x-tenant-id", "acme")]).await;
    assert!(!anonymous.served_by_cache());
    assert!(anonymous.tenant().is_empty(), "{}", anonymous.body);
    assert_eq!(s.up.last().header_all("x-tenant-id"), Vec::<String>::new());
    assert_eq!(s.up.hits(), 3);

    s.envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::FORGED_HEADER_REMOVED), 3)
        .await
        .unwrap();
}

#[tokio::test]
async fn authenticated_requests_without_a_tenant_are_never_cached() {
    let s = stack(NO_LIMITS).await;
    let public = get(&s.envoy, "/profile", &[]).await;
    assert!(public.tenant().is_empty());
    wait_cache_entries(&s.envoy, 1).await;

    // Authorization with no tenant: Envoy's cache skips it, the response is made private.
    for i in 0..2 {
        let got = get(
            &s.envoy,
            "/profile",
            &[("authorization", "Bearer some-user")],
        )
        .await;
        assert!(!got.served_by_cache(), "authorization request {i}");
        assert_eq!(
            got.header("cache-control").as_deref(),
            Some("private, max-age=60"),
            "authorization request {i}"
        );
    }
    // A credential header no source turns into a tenant (x-user-id here, which Envoy's cache
    // does not know about): not answered from the anonymous entry (the request goes upstream
    // with no-cache), and the response is private so it is never stored.
    for i in 0..2 {
        let got = get(&s.envoy, "/profile", &[("x-user-id", "u-1")]).await;
        assert!(!got.served_by_cache(), "credential request {i}");
        assert_eq!(
            got.body["user"], "u-1",
            "not a cache route: the user goes through"
        );
        assert_eq!(got.body["cache_control_seen"], "no-cache");
        assert_eq!(
            got.header("cache-control").as_deref(),
            Some("private, max-age=60")
        );
        assert_ne!(got.n(), public.n());
    }
    // An API key that maps to no tenant is refused; it never reaches the upstream.
    let got = get(&s.envoy, "/profile", &[("x-api-key", "not-a-known-key")]).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.body["error"], "invalid_api_key");
    assert_eq!(
        s.up.hits(),
        5,
        "every authenticated request reached the upstream"
    );

    // The anonymous entry is still there and still the only one.
    let again = get(&s.envoy, "/profile", &[]).await;
    assert!(again.served_by_cache());
    assert_eq!(again.body, public.body);
    assert_eq!(cache_entries(&s.envoy).await, 1);
    s.envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::PRIVATE_SET), 4)
        .await
        .unwrap();
    s.envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::CACHE_BYPASSED), 4)
        .await
        .unwrap();
}

#[tokio::test]
async fn upstream_no_store_is_respected_and_route_lifetimes_apply_only_without_cache_control() {
    let s = stack(NO_LIMITS).await;
    for path in ["/orders/no-store", "/catalog/no-store"] {
        let first = get(&s.envoy, path, &[("x-api-key", ACME_KEY)]).await;
        let second = get(&s.envoy, path, &[("x-api-key", ACME_KEY)]).await;
        assert_eq!(first.header("cache-control").as_deref(), Some("no-store"));
        assert_eq!(second.header("cache-control").as_deref(), Some("no-store"));
        assert!(!second.served_by_cache(), "{path}");
        assert_ne!(first.n(), second.n(), "{path}: both reached the upstream");
    }
    assert_eq!(s.up.hits(), 4);

    // /catalog answers without Cache-Control: the route table gives it a lifetime (private on
    // the way to the client, as the request carried a key).
    let first = get(&s.envoy, "/catalog/42", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(
        first.header("cache-control").as_deref(),
        Some("private, max-age=60, stale-while-revalidate=30")
    );
    wait_cache_entries(&s.envoy, 1).await;
    let second = get(&s.envoy, "/catalog/42", &[("x-api-key", ACME_KEY)]).await;
    assert!(second.served_by_cache());
    assert_eq!(second.body, first.body);
    assert_eq!(s.up.hits(), 5);
    s.envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::TTL_SET), 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn vary_is_merged_with_the_upstreams_own() {
    let s = stack(NO_LIMITS).await;
    let acme = get(&s.envoy, "/vary-ae", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(acme.header_all("vary"), ["Accept-Encoding, x-tenant-id"]);
    wait_cache_entries(&s.envoy, 1).await;
    let globex = get(&s.envoy, "/vary-ae", &[("x-api-key", GLOBEX_KEY)]).await;
    assert_eq!(globex.header_all("vary"), ["Accept-Encoding, x-tenant-id"]);
    assert_eq!(
        globex.tenant(),
        ["globex"],
        "merged Vary still splits tenants"
    );
    wait_cache_entries(&s.envoy, 2).await;
    let again = get(&s.envoy, "/vary-ae", &[("x-api-key", ACME_KEY)]).await;
    assert!(again.served_by_cache());
    assert_eq!(again.body, acme.body);

    // Already listed (another spelling): left as the upstream wrote it.
    let listed = get(&s.envoy, "/vary-tenant", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(listed.header_all("vary"), ["X-Tenant-Id"]);

    // Vary: * already makes every request distinct: untouched, and never cached.
    let star = get(&s.envoy, "/vary-star", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(star.header_all("vary"), ["*"]);
    let star_again = get(&s.envoy, "/vary-star", &[("x-api-key", ACME_KEY)]).await;
    assert!(!star_again.served_by_cache());
    assert_ne!(star_again.n(), star.n());
}

#[tokio::test]
async fn host_based_tenants() {
    let s = stack(NO_LIMITS).await;
    // A host names a tenant without proving it: the unverified namespace, `~<id>`.
    let acme = get(&s.envoy, "/home", &[("host", "acme.api.example.com")]).await;
    assert_eq!(acme.tenant(), ["~acme"]);
    assert_eq!(
        acme.body["plan"], "free",
        "host tenants get the host source's plan"
    );
    // Case, a port and a trailing dot do not make another host.
    for host in ["Globex.API.example.com:8080", "GLOBEX.api.example.com."] {
        let globex = get(&s.envoy, "/home", &[("host", host)]).await;
        assert_eq!(globex.tenant(), ["~globex"], "{host}");
    }
    // Not a single label before the suffix: no tenant.
    let nested = get(&s.envoy, "/home", &[("host", "a.acme.api.example.com")]).await;
    assert!(nested.tenant().is_empty());
    // The API key comes first in the configured order.
    let both = get(
        &s.envoy,
        "/home",
        &[("host", "acme.api.example.com"), ("x-api-key", GLOBEX_KEY)],
    )
    .await;
    assert_eq!(both.tenant(), ["globex"]);
    s.envoy
        .wait_stat_at_least(
            &custom(&tenant_cache_key::metrics::resolved(
                tenant_cache_key::SourceKind::Host,
            )),
            3,
        )
        .await
        .unwrap();
}

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

/// One instance doing both stages, rejecting requests without a tenant.
fn rejecting_filter() -> Value {
    chain::wasm(
        "tenant_cache_key",
        &json!({
            "sources": [
                { "path": { "segment": 1, "match": { "path_prefix": "/t/" } } }
            ],
            "unresolved": { "action": "reject", "status": 403 }
        }),
    )
    .unwrap()
}

#[tokio::test]
async fn unresolved_requests_are_rejected_with_a_json_error() {
    let up = numbered_upstream().await;
    let envoy = single_upstream("tenant-reject", vec![rejecting_filter()], up.port())
        .unwrap()
        .start()
        .await
        .unwrap();
    let denied = get(
        &envoy,
        "/orders",
        &[("x-request-id", "req-42"), ("x-tenant-id", "acme")],
    )
    .await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        denied.body,
        json!({
            "error": "tenant_unresolved",
            "message": "the request does not identify a tenant",
            "request_id": "req-42",
        })
    );
    assert_eq!(
        up.hits(),
        0,
        "a rejected request never reaches the upstream"
    );

    let ok = get(&envoy, "/t/acme/orders", &[]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.tenant(), ["acme"]);
    assert_eq!(ok.header_all("vary"), ["x-tenant-id"]);
    let bad_id = get(&envoy, "/t/ac%20me/orders", &[]).await;
    assert_eq!(bad_id.status, 403, "an id with odd characters is no tenant");
    envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::REJECTED), 2)
        .await
        .unwrap();
    envoy
        .wait_stat_at_least(
            &custom(&tenant_cache_key::metrics::resolved(
                tenant_cache_key::SourceKind::Path,
            )),
            1,
        )
        .await
        .unwrap();
}

/// Why the response stage is an upstream filter: in Envoy 1.40 the cache filter fetches misses
/// through its own side channel and stores the upstream's response before any downstream filter
/// sees it, so a `Vary` added by a filter between the cache and the router arrives too late —
/// the second tenant is served the first one's entry. If this starts failing, Envoy's cache has
/// changed and the filter-order section of docs/tenant.md must be revisited.
#[tokio::test]
async fn vary_added_between_the_cache_and_the_router_is_too_late() {
    let up = numbered_upstream().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let wasm = tools::wasm("tenant_cache_key")
        .unwrap()
        .display()
        .to_string();
    let request_stage = json!({
        "stage": "request",
        "sources": [{ "api_key": { "keys": [
            { "sha256": "8649cdebee753898fd50e01408a9e438aa5090249bc3e51b65f33dce973b0873", "tenant": "acme" },
            { "sha256": "0aef9a797b1f4523f91fe6c361cd0df88248789ca6cb8cad188d5030ac2f717e", "tenant": "globex" }
        ] } }]
    });
    let cache = json!({
        "name": "envoy.filters.http.cache",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.http.cache.file_system_http_cache.v3.FileSystemHttpCacheConfig",
                "cache_path": cache_dir.path().display().to_string(),
                "manager_config": { "thread_pool": { "thread_count": 1 } },
            },
            "allowed_vary_headers": [{ "exact": "x-tenant-id" }],
        },
    });
    let filters = vec![
        chain::wasm_at("tenant_request", &wasm, &request_stage.to_string()),
        cache,
        chain::wasm_at("tenant_response", &wasm, r#"{"stage": "response"}"#),
    ];
    let envoy = single_upstream("tenant-misordered", filters, up.port())
        .unwrap()
        .start()
        .await
        .unwrap();
    let acme = get(&envoy, "/x", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(acme.tenant(), ["acme"]);
    assert_eq!(
        acme.header_all("vary"),
        Vec::<String>::new(),
        "the filter behind the cache never saw the request, so it wrote no Vary"
    );
    wait_cache_entries(&envoy, 1).await;
    let globex = get(&envoy, "/x", &[("x-api-key", GLOBEX_KEY)]).await;
    assert_eq!(
        globex.tenant(),
        ["acme"],
        "expected the documented leak of this wrong order (the cache stored the entry without \
         Vary); Envoy's cache behaves differently now: revisit docs/tenant.md"
    );
    assert_eq!(up.hits(), 1);
}

/// A few of the crate's bad-config fixtures through a real Envoy: refused at startup, with the
/// fixture's message in Envoy's log (the crate's own test checks all of them).
#[tokio::test]
async fn bad_configs_are_refused_with_their_reason_in_envoys_log() {
    let dir = tools::repo_root().join("filters/tenant-cache-key/tests/fixtures/invalid");
    let wasm = tools::wasm("tenant_cache_key")
        .unwrap()
        .display()
        .to_string();
    for case in [
        "claim_reads_the_tenant_header",
        "api_key_not_a_digest",
        "response_stage_with_sources",
        "cache_routes_without_identity_headers",
        "streams_per_consumer_above_per_tenant",
        "unknown_source",
    ] {
        let config = std::fs::read_to_string(dir.join(format!("{case}.json"))).unwrap();
        let expected = std::fs::read_to_string(dir.join(format!("{case}.expected"))).unwrap();
        let (status, log) = single_upstream(
            "tenant-bad-config",
            vec![chain::wasm_at("tenant_cache_key", &wasm, &config)],
            9,
        )
        .unwrap()
        .start_expecting_exit(Duration::from_secs(20))
        .await
        .unwrap();
        assert!(!status.success(), "{case}: Envoy accepted a bad config");
        assert!(
            log.contains(expected.trim()),
            "{case}: expected {:?} in Envoy's log:\n{log}",
            expected.trim()
        );
        assert!(!log.contains("sk_live"), "{case}: a key reached the log");
    }
}

/// Finding: one user's cached answer served to the rest of the tenant. On a cached route the
/// response stage removes the identity headers from the upstream request, so what is stored once
/// per tenant cannot be personalised: bob (another org of acme) gets the tenant's entry, which
/// holds nothing of alice's. Off the cached routes the upstream still sees who is asking.
#[tokio::test]
async fn a_cached_route_is_tenant_wide_the_upstream_never_sees_the_user() {
    let s = stack(NO_LIMITS).await;
    let alice = [
        ("x-api-key", ACME_KEY),
        ("x-user-id", "alice"),
        ("x-org-id", "org-alice"),
    ];
    let bob = [
        ("x-api-key", ACME_KEY),
        ("x-user-id", "bob"),
        ("x-org-id", "org-bob"),
    ];
    let first = get(&s.envoy, "/catalog/7", &alice).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.tenant(), ["acme"]);
    assert_eq!(first.body["user"], Value::Null, "{}", first.body);
    assert_eq!(first.body["org"], Value::Null, "{}", first.body);
    wait_cache_entries(&s.envoy, 1).await;

    let second = get(&s.envoy, "/catalog/7", &bob).await;
    assert!(second.served_by_cache(), "the tenant's entry");
    assert_eq!(second.n(), first.n());
    let text = second.body.to_string();
    assert!(
        !text.contains("alice") && !text.contains("org-alice"),
        "bob was served alice's identity: {text}"
    );
    for r in s.up.requests() {
        assert!(r.path.starts_with("/catalog"), "{}", r.path);
        assert_eq!(r.header("x-user-id"), None, "{}", r.path);
        assert_eq!(r.header("x-org-id"), None, "{}", r.path);
    }

    // Off the cache routes the identity headers go through as before.
    let orders = get(&s.envoy, "/orders/1", &bob).await;
    assert_eq!(orders.body["user"], "bob");
    assert_eq!(orders.body["org"], "org-bob");
    s.envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::IDENTITY_REMOVED), 1)
        .await
        .unwrap();
}

/// Finding: tenant-specific answers left the gateway `public` with `Vary: x-tenant-id`, a header
/// the client never sends, so a CDN in front could hand acme's catalog to globex. The request
/// stage makes the client-facing answer to a credentialed request private — on a miss and on a
/// cache hit alike — while the entry Envoy's own cache stored keeps its lifetime (the hit).
#[tokio::test]
async fn credentialed_answers_leave_the_gateway_private_and_the_cache_still_hits() {
    let s = stack(NO_LIMITS).await;
    let key = [("x-api-key", ACME_KEY)];
    let miss = get(&s.envoy, "/catalog/9", &key).await;
    assert!(!miss.served_by_cache());
    assert_eq!(
        miss.header("cache-control").as_deref(),
        Some("private, max-age=60, stale-while-revalidate=30")
    );
    wait_cache_entries(&s.envoy, 1).await;
    let hit = get(&s.envoy, "/catalog/9", &key).await;
    assert!(
        hit.served_by_cache(),
        "the stored entry still has its max-age"
    );
    assert_eq!(hit.n(), miss.n());
    assert_eq!(
        hit.header("cache-control").as_deref(),
        Some("private, max-age=60, stale-while-revalidate=30"),
        "a hit is made private on its way out too"
    );

    // The upstream's own `public` and `s-maxage` give way; max-age stays for the browser.
    let shared = get(&s.envoy, "/shared/1", &key).await;
    assert_eq!(
        shared.header("cache-control").as_deref(),
        Some("private, max-age=60")
    );
    // A credential header alone (no tenant from it) is enough.
    let bearer = get(&s.envoy, "/shared/2", &[("authorization", "Bearer t")]).await;
    assert_eq!(
        bearer.header("cache-control").as_deref(),
        Some("private, max-age=60")
    );
    // No credential at all: the upstream's choice stands.
    let anonymous = get(&s.envoy, "/shared/3", &[]).await;
    assert_eq!(
        anonymous.header("cache-control").as_deref(),
        Some("public, max-age=60, s-maxage=600")
    );
    // A route configured as the same for everyone keeps it, credential or not.
    let public = get(&s.envoy, "/static/shared.css", &key).await;
    assert_eq!(
        public.header("cache-control").as_deref(),
        Some("public, max-age=60, s-maxage=600")
    );
}

/// Finding: a Host header alone got an API-key holder's cached answers (host and api_key
/// produced the same tenant id, and the cache varies on that id only). A tenant named by the
/// host is written as `~acme`, never `acme`; a key that does not verify is refused with 401
/// instead of falling through to the host.
#[tokio::test]
async fn a_host_alone_never_gets_a_key_holders_cached_answer() {
    let s = stack(NO_LIMITS).await;
    let host = ("host", "acme.api.example.com");
    let keyed = get(&s.envoy, "/items?page=2", &[host, ("x-api-key", ACME_KEY)]).await;
    assert_eq!(keyed.tenant(), ["acme"]);
    assert_eq!(keyed.body["plan"], "pro");
    wait_cache_entries(&s.envoy, 1).await;
    let again = get(&s.envoy, "/items?page=2", &[host, ("x-api-key", ACME_KEY)]).await;
    assert!(again.served_by_cache(), "the keyed entry is there");

    let host_only = get(&s.envoy, "/items?page=2", &[host]).await;
    assert_eq!(host_only.status, 200);
    assert!(!host_only.served_by_cache(), "{}", host_only.body);
    assert_ne!(host_only.n(), keyed.n());
    assert_eq!(host_only.tenant(), ["~acme"], "the unverified namespace");
    assert_eq!(
        host_only.body["plan"], "free",
        "the host source's plan, not acme's"
    );

    let wrong = get(
        &s.envoy,
        "/items?page=2",
        &[
            host,
            ("x-api-key", "not-acmes-key"),
            ("x-request-id", "r-8"),
        ],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.body,
        json!({
            "error": "invalid_api_key",
            "message": "the API key is not valid",
            "request_id": "r-8",
        })
    );
    assert_eq!(
        s.up.hits(),
        2,
        "the refused request never reached the upstream"
    );
    let told_acme =
        s.up.requests()
            .iter()
            .filter(|r| r.header_all("x-tenant-id").contains(&"acme".to_string()))
            .count();
    assert_eq!(told_acme, 1, "only the keyed miss was sent as acme");
    s.envoy
        .wait_stat_at_least(&custom(tenant_cache_key::metrics::INVALID_API_KEY), 1)
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
