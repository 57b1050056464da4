//! What must never leak: the user's identity to a cached route, one tenant's entries to
//! another, an unverified API key downgraded to a weaker source, a credentialed answer to a
//! shared cache.

use super::*;

/// The response stage of envoy/gateway.yaml's products cluster: the catalog cached per tenant.
fn catalog_stage(identity: Option<Value>) -> TenantPolicy {
    let mut config = json!({
        "stage": "response",
        "credential_headers": ["authorization", "x-user-id"],
        "cache_routes": [{ "match": { "path_prefix": "/api/catalog", "methods": ["GET"] }, "ttl": 60 }]
    });
    if let Some(list) = identity {
        config["identity_headers"] = list;
    }
    policy(config)
}

#[test]
fn a_cached_route_never_forwards_who_the_user_is() {
    let p = catalog_stage(None);
    let alice = [
        ("x-tenant-id", "acme"),
        ("x-user-id", "alice"),
        ("X-Org-Id", "org-a"),
        ("x-org-id", "org-b"),
    ];
    let plan = p.request_plan(&request("/api/catalog/7", &alice));
    assert_eq!(plan.remove, ["x-user-id", "x-org-id"]);
    assert!(plan.identity_removed && !plan.forged);
    let mut forwarded = request("/api/catalog/7", &alice);
    plan.apply_to(&mut forwarded);
    assert!(!forwarded.contains("x-user-id") && !forwarded.contains("x-org-id"));
    assert_eq!(
        forwarded.get("x-tenant-id"),
        Some("acme"),
        "the cache key stays"
    );
    // The facts are the request's as it arrived (x-user-id is a credential header here).
    assert_eq!(
        plan.facts,
        RequestFacts {
            tenant: true,
            authenticated: true,
            route: Some(0),
            private: false,
        }
    );
    // Not a cache route (another path, another method): the upstream still sees the user.
    for (method, path) in [("GET", "/api/products/7"), ("POST", "/api/catalog/7")] {
        let plan = p.request_plan(&request(
            path,
            &[(":method", method), ("x-user-id", "alice")],
        ));
        assert!(
            plan.remove.is_empty() && !plan.identity_removed,
            "{method} {path}"
        );
    }
    // Nothing to remove: nothing planned.
    let plan = p.request_plan(&request("/api/catalog/7", &[("x-tenant-id", "acme")]));
    assert!(plan.remove.is_empty() && !plan.identity_removed);
    // A configured list replaces the default.
    let p = catalog_stage(Some(json!(["x-user-id", "X-Customer"])));
    let plan = p.request_plan(&request(
        "/api/catalog/7",
        &[("x-user-id", "a"), ("x-customer", "c"), ("x-org-id", "o")],
    ));
    assert_eq!(plan.remove, ["x-user-id", "x-customer"]);
}

#[test]
fn tenants_from_unauthenticated_sources_live_in_their_own_namespace() {
    let p = gateway();
    let tenant_of = |extra: &[(&str, &str)]| {
        let plan = p.request_plan(&request("/", extra));
        let get = |name: &str| {
            plan.set
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        (get("x-tenant-id"), get("x-tenant-plan"))
    };
    let host = (":authority", "acme.api.example.com");
    assert_eq!(
        tenant_of(&[("x-api-key", "key-acme")]),
        (Some("acme".into()), Some("pro".into()))
    );
    assert_eq!(
        tenant_of(&[("x-jwt-tenant", "acme")]),
        (Some("acme".into()), None)
    );
    // The host names acme, but nothing proved it: `~acme`, and never acme's plan.
    assert_eq!(tenant_of(&[host]), (Some("~acme".into()), None));
    assert_eq!(
        tenant_of(&[host, ("x-tenant-id", "acme"), ("x-tenant-plan", "pro")]),
        (Some("~acme".into()), None),
        "forged copies change nothing"
    );
    for host in ["ACME.api.example.com.", "acme.API.example.com:8080"] {
        assert_eq!(
            tenant_of(&[(":authority", host)]).0.as_deref(),
            Some("~acme")
        );
    }
    // Without any credential source there is nothing to keep apart: ids are written as found.
    let p = policy(json!({
        "plan_header": "x-tenant-plan",
        "sources": [
            { "host": { "suffix": ".api.example.com", "plan": "free" } },
            { "default": { "tenant": "public" } }
        ]
    }));
    let plan = p.request_plan(&request("/", &[host]));
    assert_eq!(
        plan.set,
        [
            ("x-tenant-id", "acme".to_string()),
            ("x-tenant-plan", "free".to_string())
        ]
    );
    // default and path are unauthenticated too.
    let p = policy(json!({
        "sources": [
            { "claim": { "header": "x-jwt-tenant" } },
            { "path": { "segment": 1, "match": { "path_prefix": "/t/" } } },
            { "default": { "tenant": "public" } }
        ]
    }));
    let set = |path: &str| p.request_plan(&request(path, &[])).set;
    assert_eq!(set("/t/acme/x"), [("x-tenant-id", "~acme".to_string())]);
    assert_eq!(set("/x"), [("x-tenant-id", "~public".to_string())]);
}

#[test]
fn an_api_key_that_does_not_verify_is_refused_not_downgraded() {
    let p = gateway();
    for (key, why) in [
        (vec!["wrong"], KeyRefusal::Unknown),
        (vec!["key-acme", "key-acme"], KeyRefusal::Repeated),
        (vec![""], KeyRefusal::Unknown),
    ] {
        let mut extra = vec![(":authority", "acme.api.example.com")];
        extra.extend(key.iter().map(|k| ("x-api-key", *k)));
        let plan = p.request_plan(&request("/", &extra));
        assert_eq!(plan.outcome, Outcome::InvalidApiKey(why), "{key:?}");
        assert!(
            !plan.set.iter().any(|(n, _)| *n == "x-tenant-id"),
            "{key:?}: no tenant, the host's included"
        );
    }
    // An earlier source that decides wins: a verified claim with a stray key is the claim's.
    let plan = p.request_plan(&request(
        "/",
        &[("x-jwt-tenant", "acme"), ("x-api-key", "wrong")],
    ));
    assert_eq!(plan.outcome, Outcome::Resolved(SourceKind::Claim));
}

#[test]
fn credentialed_answers_leave_the_gateway_private() {
    let p = policy(json!({
        "stage": "request",
        "sources": [
            { "api_key": { "keys": [{ "sha256": sha256_hex("key-acme"), "tenant": "acme" }] } },
            { "host": { "suffix": ".api.example.com" } }
        ],
        "unresolved": { "action": "anonymous" },
        "credential_headers": ["authorization", "x-user-id"],
        "public_routes": [{ "match": { "path_prefix": "/static/" } }]
    }));
    let private =
        |path: &str, extra: &[(&str, &str)]| p.request_plan(&request(path, extra)).facts.private;
    assert!(
        private("/catalog", &[("x-api-key", "key-acme")]),
        "a key proved the tenant"
    );
    assert!(
        private("/catalog", &[("x-user-id", "u")]),
        "a credential header"
    );
    assert!(private("/catalog", &[("authorization", "Bearer t")]));
    assert!(
        !private("/catalog", &[(":authority", "acme.api.example.com")]),
        "host only"
    );
    assert!(!private("/catalog", &[]), "anonymous");
    assert!(
        !private("/static/a.css", &[("x-api-key", "key-acme")]),
        "a public route"
    );

    let facts = p
        .request_plan(&request("/c", &[("x-api-key", "key-acme")]))
        .facts;
    let edit = |cc: &[&str]| {
        let pairs: Vec<_> = cc.iter().map(|v| ("cache-control", *v)).collect();
        p.response_edits(facts, &response("200", &pairs))
    };
    let e = edit(&["public, max-age=60, s-maxage=600"]);
    assert_eq!(e.cache_control.as_deref(), Some("private, max-age=60"));
    assert!(e.private_set && !e.ttl_set && e.vary.is_none());
    assert_eq!(
        edit(&["max-age=60, stale-while-revalidate=30"])
            .cache_control
            .as_deref(),
        Some("private, max-age=60, stale-while-revalidate=30")
    );
    assert_eq!(edit(&[]).cache_control.as_deref(), Some("private"));
    assert_eq!(
        edit(&["no-cache"]).cache_control.as_deref(),
        Some("private, no-cache")
    );
    assert!(edit(&["no-store"]).is_empty());
    assert!(edit(&["private, max-age=5"]).is_empty());
    // A request stage never shapes for caches: no Vary, no lifetime, whatever the facts.
    let not_private = RequestFacts {
        tenant: true,
        ..RequestFacts::default()
    };
    assert!(p
        .response_edits(not_private, &response("200", &[]))
        .is_empty());
}

#[test]
fn both_stages_apply_the_lifetime_then_make_it_private() {
    let p = policy(json!({
        "sources": [{ "api_key": { "keys": [{ "sha256": sha256_hex("k"), "tenant": "acme" }] } }],
        "cache_routes": [{ "match": { "path_prefix": "/catalog" }, "ttl": 60 }]
    }));
    let plan = p.request_plan(&request(
        "/catalog/1",
        &[("x-api-key", "k"), ("x-user-id", "u")],
    ));
    assert_eq!(plan.remove, ["x-user-id", "x-api-key"]);
    let e = p.response_edits(plan.facts, &response("200", &[]));
    assert_eq!(e.vary.as_deref(), Some("x-tenant-id"));
    assert_eq!(e.cache_control.as_deref(), Some("private, max-age=60"));
    assert!(e.ttl_set && e.private_set);
}
