//! Request and response decisions of [`TenantPolicy`], end to end on plain header maps.

use crate::policy::{Outcome, RequestFacts, TenantPolicy};
use crate::sources::SourceKind;
use crate::Stage;
use filter_core::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn policy(config: Value) -> TenantPolicy {
    TenantPolicy::new(config.to_string().as_bytes()).unwrap()
}

fn error(config: Value) -> String {
    TenantPolicy::new(config.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

fn request(path: &str, extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::from([
        (":method", "GET"),
        (":path", path),
        (":authority", "gw.example.com"),
        ("x-request-id", "r-1"),
    ]);
    for (n, v) in extra {
        if n.starts_with(':') {
            h.set(n, v);
        } else {
            h.append(n, v);
        }
    }
    h
}

fn response(status: &str, extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::from([(":status", status), ("content-type", "application/json")]);
    for (n, v) in extra {
        h.append(n, v);
    }
    h
}

/// The request stage of the shipped configuration: claim, API key, host, then anonymous.
fn gateway() -> TenantPolicy {
    policy(json!({
        "stage": "request",
        "plan_header": "x-tenant-plan",
        "sources": [
            { "claim": { "header": "x-jwt-tenant", "plan_header": "x-jwt-plan" } },
            { "api_key": { "keys": [
                { "sha256": sha256_hex("key-acme"), "tenant": "acme", "plan": "pro" },
                { "sha256": sha256_hex("key-globex"), "tenant": "globex", "plan": "free" }
            ] } },
            { "host": { "suffix": ".api.example.com" } }
        ],
        "unresolved": { "action": "anonymous" },
        "credential_headers": ["authorization", "x-api-key"]
    }))
}

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
    assert_eq!(plan.outcome, Outcome::InvalidApiKey);
    let plan = p.request_plan(&request("/", &[]));
    assert_eq!(plan.outcome, Outcome::Anonymous);
    assert!(p
        .response_edits(plan.facts, &response("200", &[]))
        .is_empty());
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (
            json!({}),
            "field `sources`: at least one tenant source is required",
        ),
        (
            json!({ "stage": "response", "sources": [{ "default": { "tenant": "a" } }] }),
            "field `sources`: is only used by the request stage",
        ),
        (
            json!({ "stage": "request", "sources": [{ "default": { "tenant": "a" } }], "cache_routes": [] }),
            "field `cache_routes`: is only used by the response stage",
        ),
        (
            json!({ "sources": [{ "default": { "tenant": "a" } }, { "host": { "suffix": ".x.com" } }] }),
            "field `sources[1]`: is never reached",
        ),
        (
            json!({ "sources": [{ "default": { "tenant": "a", "plan": "pro" } }] }),
            "field `sources[0].default.plan`: a plan needs the top-level plan_header",
        ),
        (
            json!({ "tenant_header": "x tenant", "sources": [{ "default": { "tenant": "a" } }] }),
            "field `tenant_header`",
        ),
        (
            json!({ "sources": [{ "default": { "tenant": "a" } }], "unresolved": { "action": "reject", "status": 401 } }),
            "field `unresolved.status`: 401 is not allowed (400 or 403)",
        ),
        (
            json!({ "sources": [{ "default": { "tenant": "a" } }], "unresolved": { "action": "ignore" } }),
            "field `unresolved.action`: unknown variant `ignore`",
        ),
        (
            json!({ "sources": [{ "cookie": { "name": "t" } }] }),
            "field `sources[0]`: unknown variant `cookie`",
        ),
        (
            json!({ "sources": [{ "default": { "tenant": "a" } }], "tenant_id_max_length": 0 }),
            "field `tenant_id_max_length`: 0 is out of range",
        ),
    ];
    let more = [
        (
            json!({ "stage": "response", "identity_headers": [], "cache_routes": [{ "ttl": 5 }] }),
            "field `identity_headers`: cannot be empty with cache_routes",
        ),
        (
            json!({ "stage": "response", "identity_headers": ["x-user-id", "X-Tenant-Id"] }),
            "field `identity_headers[1]`: \"x-tenant-id\" is the tenant or plan header",
        ),
        (
            json!({ "stage": "response", "identity_headers": ["x user"] }),
            "field `identity_headers[0]`: \"x user\" is not a valid header name",
        ),
        (
            json!({ "stage": "request", "sources": [{ "default": { "tenant": "a" } }], "identity_headers": ["x-user-id"] }),
            "field `identity_headers`: is only used by the response stage",
        ),
        (
            json!({ "stage": "response", "vary": false, "cache_routes": [{ "ttl": 5 }] }),
            "field `vary`: cannot be false with cache_routes",
        ),
        (
            json!({ "stage": "response", "public_routes": [{ "match": { "path_prefix": "/s" } }] }),
            "field `public_routes`: is only used by the request stage",
        ),
        (
            json!({ "sources": [{ "default": { "tenant": "a" } }], "public_routes": [{ "match": { "path_prefix": "s" } }] }),
            "field `public_routes[0].match.path_prefix`",
        ),
        (
            json!({ "sources": [{ "default": { "tenant": "a" } }], "public_routes": [{}] }),
            "field `public_routes[0]`: missing field `match`",
        ),
    ];
    for (config, expected) in cases.into_iter().chain(more) {
        let message = error(config.clone());
        assert!(message.contains(expected), "{config}: {message}");
    }
}

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
    for key in [vec!["wrong"], vec!["key-acme", "key-acme"], vec![""]] {
        let mut extra = vec![(":authority", "acme.api.example.com")];
        extra.extend(key.iter().map(|k| ("x-api-key", *k)));
        let plan = p.request_plan(&request("/", &extra));
        assert_eq!(plan.outcome, Outcome::InvalidApiKey, "{key:?}");
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
