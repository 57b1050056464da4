//! Cache isolation: only the catalog route caches, a cached answer holds no identity, credentialed answers stay private.

use crate::prelude::*;
use crate::support::{jwt_identity_headers, lower, writer_token};

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
            let resp = gw
                .route_request(&route, reqwest::Method::GET, &route.sample_path())
                .bearer_auth(writer_token())
                .send()
                .await
                .unwrap();
            // A transcoded route's sample item is not in the inventory: the service's
            // NOT_FOUND, which must leave as private as a 200.
            let expected = if route.is_transcoded() { 404 } else { 200 };
            assert_eq!(resp.status(), expected, "{}", route.describe());
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
