//! The response cache: per-tenant entries on the catalog route, no caching elsewhere.

use crate::prelude::*;

/// The catalog (/api/catalog, served by products) is cached per tenant: a repeat from the same tenant is a hit (with
/// `age`), another tenant never gets the first one's entry, and a forged tenant header changes
/// nothing. Every other route skips the cache even when its upstream says the answer may be
/// cached, so retries, the canary and timeouts keep working.
#[tokio::test]
async fn catalog_is_cached_per_tenant_and_other_routes_skip_the_cache() {
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = served.clone();
    let cacheable = |name: &'static str| -> Handler {
        Arc::new(move |r: &Recorded| {
            Reply::json(200, &json!({"service": name, "path": r.path}))
                .header("cache-control", "public, max-age=60")
        })
    };
    let gw = Gateway::start(Opts {
        products: Arc::new(move |r: &Recorded| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::json(
                200,
                &json!({"service": "products", "path": r.path,
                        "tenant": r.header("x-tenant-id"), "n": n}),
            )
            // A slow item, so concurrent misses overlap.
            .delay_if(r.path.ends_with("/slow"), Duration::from_millis(300))
        }),
        orders_v1: cacheable("orders-v1"),
        orders_v2: cacheable("orders-v2"),
        ..Opts::default()
    })
    .await;
    let as_tenant = |tenant: &str| {
        client()
            .get(gw.url("/api/catalog/7"))
            .bearer_auth(token("user-1", tenant, "orders:read"))
    };
    let first = as_tenant("acme").send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "age"), None, "a miss");
    let vary = header(&first, "vary").unwrap_or_default();
    assert!(vary.to_ascii_lowercase().contains("x-tenant-id"), "{vary}");
    let cache_control = header(&first, "cache-control");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["tenant"], "acme");
    assert_eq!(
        first["path"], "/api/catalog/7",
        "no rewrite on the cached route"
    );
    // The route's lifetime, private toward the client: only the gateway's own cache (which
    // varies on the tenant) may keep it.
    assert_eq!(cache_control.as_deref(), Some("private, max-age=60"));

    // The file cache writes its entry in the background: repeat until a hit, at most 5 s.
    let hit = wait::until("acme's repeat to be a hit", Duration::from_secs(5), || {
        let req = as_tenant("acme");
        async move {
            let resp = req.send().await?;
            if header(&resp, "age").is_none() {
                return Ok(None);
            }
            Ok(Some(resp.json::<Value>().await?))
        }
    })
    .await
    .unwrap();
    assert_eq!(hit, first, "the cached body");
    let upstream_calls = served.load(Ordering::SeqCst);

    // Another tenant: its own miss and its own body, never acme's entry.
    let other: Value = as_tenant("globex")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["tenant"], "globex");
    assert_eq!(served.load(Ordering::SeqCst), upstream_calls + 1);
    // A forged tenant header is replaced by the token's tenant: acme's entry, not globex's.
    let forged = as_tenant("acme")
        .header("x-tenant-id", "globex")
        .header("x-jwt-tenant", "globex")
        .send()
        .await
        .unwrap();
    assert!(header(&forged, "age").is_some());
    let forged: Value = forged.json().await.unwrap();
    assert_eq!(forged["tenant"], "acme");
    assert_eq!(served.load(Ordering::SeqCst), upstream_calls + 1);

    // Concurrent misses for the same URL from two tenants (the upstream slow, so they overlap
    // in the cache): each tenant gets its own tenant's answer, none the other's.
    let slow = |tenant: &str| {
        let req = client().get(gw.url("/api/catalog/slow")).bearer_auth(token(
            "user-1",
            tenant,
            "orders:read",
        ));
        let tenant = tenant.to_string();
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            (tenant, body)
        }
    };
    let answers = futures_util::future::join_all(
        ["acme", "globex", "acme", "globex", "initech", "acme"].map(slow),
    )
    .await;
    for (tenant, body) in &answers {
        assert_eq!(body["tenant"], tenant.as_str(), "{tenant} got {body}");
    }

    // Orders answers "public, max-age=60", but its routes skip the cache: every GET arrives.
    let before = api_requests(&gw.orders_v1).len() + api_requests(&gw.orders_v2).len();
    for _ in 0..3 {
        let resp = gw.get("/api/orders/1").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "age"), None);
    }
    let after = api_requests(&gw.orders_v1).len() + api_requests(&gw.orders_v2).len();
    assert_eq!(after - before, 3);
}
