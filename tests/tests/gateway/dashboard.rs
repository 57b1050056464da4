//! `GET /api/dashboard`: the aggregate stage in the reference gateway answers from the user,
//! orders and catalog services, called in parallel after jwt_auth, the tenant and the limits,
//! with the verified identity and never the client's credentials or forged identity.

use crate::prelude::*;

/// Each service's answer to a dashboard leg, after a delay so that overlapping calls show.
fn leg(name: &'static str, extra: Value) -> Handler {
    Arc::new(move |r: &Recorded| {
        let mut body = json!({ "service": name, "path": r.path });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Reply::json(200, &body).delay(Duration::from_millis(300))
    })
}

#[tokio::test]
async fn the_dashboard_merges_three_parallel_legs_with_the_verified_identity() {
    let gw = Gateway::start(Opts {
        users: leg(
            "users",
            json!({ "name": "Ann", "password_hash": "x", "internal": 1 }),
        ),
        orders_v1: leg("orders", json!({ "items": [1, 2] })),
        products: leg("products", json!({ "count": 3 })),
        ..Opts::default()
    })
    .await;
    let tok = token("user-7", "acme", "orders:read");
    let ups = [&gw.users, &gw.orders_v1, &gw.products];
    let before: Vec<usize> = ups.iter().map(|u| u.requests().len()).collect();
    let (status, body) = answer(
        client()
            .get(gw.url("/api/dashboard"))
            .bearer_auth(&tok)
            .header("x-user-id", "forged")
            .header("x-tenant-id", "globex"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["path"], "/users/user-7", "{body}");
    assert_eq!(body["user"]["name"], "Ann");
    assert!(
        body["user"].get("password_hash").is_none() && body["user"].get("internal").is_none(),
        "stripped per leg: {body}"
    );
    assert_eq!(body["orders"]["items"], json!([1, 2]), "{body}");
    assert_eq!(body["catalog"]["count"], 3, "{body}");
    assert!(body.get("_errors").is_none(), "{body}");

    // One call per leg, each with the verified identity, none with the client's token or its
    // forged identity; the calls overlapped (each waits 300 ms before answering).
    let calls: Vec<Recorded> = ups
        .iter()
        .zip(&before)
        .map(|(u, n)| {
            let new: Vec<Recorded> = (u.requests().into_iter().skip(*n))
                .filter(|r| !is_probe(r))
                .collect();
            assert_eq!(new.len(), 1, "{new:?}");
            new.into_iter().next().unwrap()
        })
        .collect();
    for call in &calls {
        assert_eq!(call.header_all("x-user-id"), ["user-7"], "{}", call.path);
        assert_eq!(call.header_all("x-tenant-id"), ["acme"], "{}", call.path);
        assert_eq!(call.header("authorization"), None, "{}", call.path);
    }
    let first = calls.iter().map(|c| c.arrived).min().unwrap();
    let last = calls.iter().map(|c| c.arrived).max().unwrap();
    assert!(
        last.duration_since(first) < Duration::from_millis(300),
        "the legs did not overlap: {:?} between the first and the last call",
        last.duration_since(first)
    );

    // No token: jwt_auth refuses before any leg is called.
    let counts: Vec<usize> = ups.iter().map(|u| u.requests().len()).collect();
    let (status, body) = answer(client().get(gw.url("/api/dashboard"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_token"))
    );
    let after: Vec<usize> = ups.iter().map(|u| u.requests().len()).collect();
    assert_eq!(counts, after, "a leg was called for a refused request");
}

/// The dashboard is kept 5 s per set of leg calls: the same user gets it again without a leg
/// being called; another user of the same tenant never gets the first user's answer.
#[tokio::test]
async fn the_dashboard_is_cached_per_user_and_tenant_never_across() {
    let gw = Gateway::start(Opts {
        users: Arc::new(|r: &Recorded| Reply::json(200, &json!({ "path": r.path }))),
        ..Opts::default()
    })
    .await;
    let ups = [&gw.users, &gw.orders_v1, &gw.products];
    let calls = || -> usize { ups.iter().map(|u| api_requests(u).len()).sum() };
    let get = |user: &str, tenant: &str| {
        client()
            .get(gw.url("/api/dashboard"))
            .bearer_auth(token(user, tenant, "orders:read"))
    };
    let first = get("ann", "acme").send().await.unwrap();
    assert_eq!(header(&first, "x-aggregate-cache").as_deref(), Some("miss"));
    let first: Value = first.json().await.unwrap();
    assert_eq!(calls(), 3);

    let again = get("ann", "acme").send().await.unwrap();
    assert_eq!(header(&again, "x-aggregate-cache").as_deref(), Some("hit"));
    assert!(header(&again, "age").is_some());
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(calls(), 3, "a hit calls no leg");

    for (user, tenant) in [("bob", "acme"), ("ann", "globex")] {
        let other = get(user, tenant).send().await.unwrap();
        assert_eq!(
            header(&other, "x-aggregate-cache").as_deref(),
            Some("miss"),
            "{user}@{tenant}"
        );
        let body: Value = other.json().await.unwrap();
        assert_eq!(body["user"]["path"], format!("/users/{user}"), "{body}");
    }
    assert_eq!(calls(), 9);
}
