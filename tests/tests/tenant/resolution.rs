//! Where the tenant comes from: API keys over forged headers, hosts (never a key holder's tenant), refusals, bad configs.

use crate::prelude::*;
use crate::support::{
    get, numbered_upstream, stack, wait_cache_entries, ACME_KEY, GLOBEX_KEY, NO_LIMITS,
};

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
