//! The response stage: `Vary`, route lifetimes and private answers, and both stages in one
//! instance.

use super::*;

/// The response stage of the shipped configuration (an upstream filter on the cluster).
fn upstream_stage() -> TenantPolicy {
    policy(json!({
        "stage": "response",
        "credential_headers": ["authorization", "x-api-key"],
        "cache_routes": [
            { "match": { "path_prefix": "/catalog" }, "ttl": 60, "stale_while_revalidate": 30 },
            { "match": { "path_prefix": "/" , "methods": ["GET"] }, "ttl": 5 }
        ]
    }))
}

#[test]
fn response_stage_reads_facts_from_the_request_it_forwards() {
    let p = upstream_stage();
    assert_eq!(p.stage(), Stage::Response);
    let plan = p.request_plan(&request("/catalog/1", &[("x-tenant-id", "acme")]));
    assert!(plan.remove.is_empty() && plan.set.is_empty() && !plan.forged);
    assert_eq!(plan.outcome, Outcome::NotResolving);
    assert_eq!(
        plan.facts,
        RequestFacts {
            tenant: true,
            authenticated: false,
            route: Some(0),
            private: false,
        }
    );
    let plan = p.request_plan(&request("/other", &[("x-api-key", "unknown")]));
    assert_eq!(
        plan.facts,
        RequestFacts {
            tenant: false,
            authenticated: true,
            route: Some(1),
            private: false,
        }
    );
}

#[test]
fn vary_and_route_lifetimes() {
    let p = upstream_stage();
    let tenant_catalog = RequestFacts {
        tenant: true,
        authenticated: false,
        route: Some(0),
        private: false,
    };
    let e = p.response_edits(tenant_catalog, &response("200", &[]));
    assert_eq!(e.vary.as_deref(), Some("x-tenant-id"));
    assert_eq!(
        e.cache_control.as_deref(),
        Some("max-age=60, stale-while-revalidate=30")
    );
    assert!(e.ttl_set && !e.private_set);
    // The upstream's own Cache-Control wins, no-store included; Vary is merged.
    let e = p.response_edits(
        tenant_catalog,
        &response(
            "200",
            &[("cache-control", "no-store"), ("vary", "Accept-Encoding")],
        ),
    );
    assert_eq!(e.vary.as_deref(), Some("Accept-Encoding, x-tenant-id"));
    assert_eq!(e.cache_control, None);
    // A response setting a cookie is one user's: no lifetime from the route.
    let e = p.response_edits(
        tenant_catalog,
        &response("200", &[("set-cookie", "session=abc; HttpOnly")]),
    );
    assert_eq!(e.vary.as_deref(), Some("x-tenant-id"));
    assert_eq!(e.cache_control, None);
    assert!(!e.ttl_set);
    // Errors get no lifetime.
    let e = p.response_edits(tenant_catalog, &response("500", &[]));
    assert_eq!(e.cache_control, None);
    assert!(!e.ttl_set);
    // Nothing to do at all.
    let e = p.response_edits(
        RequestFacts {
            tenant: true,
            authenticated: true,
            route: None,
            private: false,
        },
        &response("200", &[("vary", "x-tenant-id")]),
    );
    assert!(e.is_empty());
}

#[test]
fn authenticated_without_tenant_is_private() {
    let p = upstream_stage();
    let anon_auth = |route| RequestFacts {
        tenant: false,
        authenticated: true,
        route,
        private: false,
    };
    let e = p.response_edits(anon_auth(None), &response("200", &[]));
    assert_eq!(e.cache_control.as_deref(), Some("private"));
    assert!(e.private_set && !e.ttl_set);
    let e = p.response_edits(
        anon_auth(None),
        &response("200", &[("cache-control", "public, max-age=300")]),
    );
    assert_eq!(e.cache_control.as_deref(), Some("private, max-age=300"));
    let e = p.response_edits(anon_auth(Some(0)), &response("200", &[]));
    assert_eq!(
        e.cache_control.as_deref(),
        Some("private, max-age=60, stale-while-revalidate=30")
    );
    assert!(e.private_set && e.ttl_set);
    let e = p.response_edits(
        anon_auth(None),
        &response("200", &[("cache-control", "no-store")]),
    );
    assert_eq!(e.cache_control, None);
    assert!(!e.private_set);
    // Anonymous and unauthenticated: shared, keyed on the absent tenant.
    let e = p.response_edits(RequestFacts::default(), &response("200", &[]));
    assert_eq!(
        (e.vary.as_deref(), e.cache_control.as_deref()),
        (Some("x-tenant-id"), None)
    );
}

#[test]
fn both_stages_in_one_instance() {
    let p = policy(json!({
        "sources": [{ "api_key": { "header": "x-key", "remove": false, "keys": [
            { "sha256": sha256_hex("k1"), "tenant": "acme" }
        ] } }],
        "unresolved": { "action": "anonymous" },
        "credential_headers": ["x-key"],
        "vary": false
    }));
    let plan = p.request_plan(&request("/", &[("x-key", "k1")]));
    assert_eq!(plan.outcome, Outcome::Resolved(SourceKind::ApiKey));
    assert!(plan.remove.is_empty(), "remove: false keeps the key");
    assert_eq!(
        plan.facts,
        RequestFacts {
            tenant: true,
            authenticated: true,
            route: None,
            private: true,
        }
    );
    // vary: false; the keyed answer leaves private (one instance is both stages).
    let e = p.response_edits(
        plan.facts,
        &response("200", &[("cache-control", "max-age=9")]),
    );
    assert_eq!(
        (e.vary, e.cache_control.as_deref()),
        (None, Some("private, max-age=9"))
    );
    let plan = p.request_plan(&request("/", &[("x-key", "wrong")]));
    assert_eq!(plan.outcome, Outcome::InvalidApiKey(KeyRefusal::Unknown));
    let plan = p.request_plan(&request("/", &[]));
    assert_eq!(plan.outcome, Outcome::Anonymous);
    assert!(p
        .response_edits(plan.facts, &response("200", &[]))
        .is_empty());
}
