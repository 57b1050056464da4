//! The request stage: forged headers, sources in order, unresolved requests, and the facts it
//! records for the response.

use super::*;

#[test]
fn forged_tenant_and_plan_headers_are_removed_and_replaced() {
    let p = gateway();
    let h = request(
        "/orders",
        &[
            ("x-tenant-id", "acme"),
            ("X-Tenant-Id", "acme"),
            ("x-tenant-plan", "enterprise"),
            ("x-api-key", "key-globex"),
        ],
    );
    let plan = p.request_plan(&h);
    assert!(plan.forged);
    assert_eq!(plan.remove, ["x-tenant-id", "x-tenant-plan", "x-api-key"]);
    assert_eq!(
        plan.set,
        [
            ("x-tenant-id", "globex".to_string()),
            ("x-tenant-plan", "free".to_string())
        ]
    );
    assert_eq!(plan.outcome, Outcome::Resolved(SourceKind::ApiKey));
}

#[test]
fn a_forged_header_alone_resolves_nothing() {
    let p = gateway();
    let plan = p.request_plan(&request("/", &[("x-tenant-id", "acme")]));
    assert!(plan.forged);
    assert_eq!(plan.remove, ["x-tenant-id"]);
    assert!(plan.set.is_empty());
    assert_eq!(plan.outcome, Outcome::Anonymous);
    assert!(!plan.cache_bypassed);
}

#[test]
fn a_credential_without_tenant_bypasses_the_cache() {
    let p = gateway();
    // A bearer token no source maps to a tenant: anonymous, but never answered from the shared
    // anonymous entry.
    let plan = p.request_plan(&request("/", &[("authorization", "Bearer t")]));
    assert_eq!(plan.outcome, Outcome::Anonymous);
    assert!(plan.cache_bypassed);
    assert!(plan.remove.is_empty(), "the token goes on to the upstream");
    assert_eq!(plan.set, [("cache-control", "no-cache".to_string())]);
    let plan = p.request_plan(&request(
        "/",
        &[
            ("authorization", "Bearer t"),
            ("cache-control", "max-age=10"),
        ],
    ));
    assert_eq!(
        plan.set,
        [("cache-control", "max-age=10, no-cache".to_string())]
    );
    // A resolved tenant is cached per tenant as usual.
    let plan = p.request_plan(&request("/", &[("x-api-key", "key-acme")]));
    assert!(!plan.cache_bypassed);
}

#[test]
fn sources_are_tried_in_order() {
    let p = gateway();
    let both = request(
        "/",
        &[
            ("x-jwt-tenant", "initech"),
            ("x-api-key", "key-acme"),
            (":authority", "globex.api.example.com"),
        ],
    );
    let plan = p.request_plan(&both);
    assert_eq!(plan.outcome, Outcome::Resolved(SourceKind::Claim));
    assert_eq!(plan.set, [("x-tenant-id", "initech".to_string())]);
    assert!(!plan.forged);
    assert!(
        plan.remove.is_empty(),
        "the key stays when it did not resolve"
    );
    // An invalid claim falls through to the next source.
    let bad_claim = request(
        "/",
        &[("x-jwt-tenant", "init tech"), ("x-api-key", "key-acme")],
    );
    assert_eq!(
        p.request_plan(&bad_claim).outcome,
        Outcome::Resolved(SourceKind::ApiKey)
    );
    let host = request("/", &[(":authority", "globex.api.example.com:443")]);
    let plan = p.request_plan(&host);
    assert_eq!(plan.outcome, Outcome::Resolved(SourceKind::Host));
    assert_eq!(plan.set, [("x-tenant-id", "~globex".to_string())]);
}

#[test]
fn unresolved_rejects_by_default() {
    let p = policy(
        json!({ "sources": [{ "path": { "segment": 0, "match": { "path_prefix": "/t-" } } }] }),
    );
    assert_eq!(
        p.request_plan(&request("/x", &[])).outcome,
        Outcome::Reject { status: 403 }
    );
    let p = policy(json!({
        "sources": [{ "default": { "tenant": "public", "match": { "path_prefix": "/public" } } }],
        "unresolved": { "action": "reject", "status": 400 }
    }));
    assert_eq!(
        p.request_plan(&request("/x", &[])).outcome,
        Outcome::Reject { status: 400 }
    );
    assert_eq!(
        p.request_plan(&request("/public/a", &[])).outcome,
        Outcome::Resolved(SourceKind::Default)
    );
}

#[test]
fn request_stage_records_only_what_the_client_facing_answer_needs() {
    let p = gateway();
    let plan = p.request_plan(&request("/", &[("authorization", "Bearer x")]));
    assert_eq!(
        plan.facts,
        RequestFacts {
            private: true,
            ..RequestFacts::default()
        }
    );
    assert!(p.edits_responses(&plan.facts));
    let plan = p.request_plan(&request("/", &[]));
    assert!(!p.edits_responses(&plan.facts), "nothing to do: no read");
}
