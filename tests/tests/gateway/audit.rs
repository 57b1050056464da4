//! The audit log: every 401, 403 and 429 as one JSON line in a file of its own, naming the
//! refusing filter and its own reason (and a rate limit's name) — never a token.

use crate::prelude::*;

#[tokio::test]
async fn every_refusal_is_one_audit_line_with_the_filters_reason_and_no_token() {
    let gw = Gateway::start(Opts::default()).await;
    let c = client();
    let now = now();
    let issued = |claims_at: u64, exp: u64, scope: &str, tenant: &str| {
        let mut cl = claims(claims_at);
        cl["iss"] = json!(ISSUER);
        cl["sub"] = json!("user-7");
        cl["tenant"] = json!(tenant);
        cl["scope"] = json!(scope);
        cl["exp"] = json!(exp);
        sign(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}), &cl)
    };
    let expired = issued(now - 3000, now - 600, "orders:read", "acme");
    let good = token("user-7", "acme", "orders:read");
    let bad_signature = tampered(&good);
    let no_tenant = issued(now, now + 600, "orders:read", "evil@tenant");
    let tiny = token("user-9", "tiny", "orders:read");
    let tokens = [&expired, &good, &bad_signature, &no_tenant, &tiny];

    // (path marker, request, expected status, denied_by, reason); each also carries a token as
    // ?access_token=, which must not reach the audit log either.
    let get = |path: &str, tok: &str| c.get(gw.url(path)).bearer_auth(tok.to_string());
    let cases = [
        (
            "/api/users/audit-expired",
            get("/api/users/audit-expired", &expired),
            401,
            "jwt_auth",
            "expired",
        ),
        (
            "/api/users/audit-signature",
            get("/api/users/audit-signature", &bad_signature),
            401,
            "jwt_auth",
            "bad_signature",
        ),
        (
            "/api/users/audit-missing",
            c.get(gw.url("/api/users/audit-missing")),
            401,
            "jwt_auth",
            "missing",
        ),
        (
            "/api/orders/audit-scope",
            c.post(gw.url("/api/orders/audit-scope")).bearer_auth(&good),
            403,
            "jwt_auth",
            "scope",
        ),
        (
            "/api/users/audit-tenant",
            get("/api/users/audit-tenant", &no_tenant),
            403,
            "tenant_cache_key",
            "tenant_unresolved",
        ),
    ];
    for (marker, req, status, ..) in &cases {
        let resp = req
            .try_clone()
            .unwrap()
            .query(&[("access_token", good.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), *status, "{marker}");
    }
    // Tenant tiny has 3 requests an hour: the 4th is the ratelimit stage's 429.
    for i in 0..4 {
        let resp = get(&format!("/api/products/audit-limit-{i}"), &tiny)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), if i < 3 { 200 } else { 429 }, "request {i}");
    }
    // An admitted request is not audited.
    assert_eq!(served(gw.get("/api/users/audit-admitted")).await.0, "users");

    for (marker, _, status, denied_by, reason) in cases {
        let line = gw.audit_line(marker).await;
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["denied_by"], denied_by, "{line}");
        assert_eq!(line["reason"], reason, "{line}");
        assert!(line["limit"].is_null(), "no rate limit refused it: {line}");
        assert_eq!(line["path"], marker, "the path without its query: {line}");
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
        assert!(
            line["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        assert!(line["route"].is_string(), "{line}");
    }
    // The tenant refusal comes after jwt_auth verified the token: the user is known.
    let line = gw.audit_line("/api/users/audit-tenant").await;
    assert_eq!(
        (line["user_id"].as_str(), line["route"].as_str()),
        (Some("user-7"), Some("users"))
    );
    let line = gw.audit_line("/api/products/audit-limit-3").await;
    assert_eq!(line["status"], 429, "{line}");
    assert_eq!(
        (
            line["denied_by"].as_str(),
            line["reason"].as_str(),
            line["limit"].as_str()
        ),
        (Some("ratelimit"), Some("rate_limited"), Some("standard")),
        "{line}"
    );
    assert_eq!(
        (line["user_id"].as_str(), line["tenant"].as_str()),
        (Some("user-9"), Some("tiny"))
    );

    // One line per refusal, none for what was admitted; no token, nor its signature, anywhere.
    let text = std::fs::read_to_string(&gw.audit_log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    for tok in tokens {
        let signature = tok.rsplit('.').next().unwrap();
        assert!(
            !text.contains(signature),
            "a token's signature in the audit log: {text}"
        );
    }
    // The main access log still has every request.
    assert_eq!(
        gw.access_line("/api/users/audit-admitted").await["status"],
        200
    );

    // Envoy's own refusals have no filter reason; their details say which: the anonymous
    // budget (40 requests without a credential per address) answers the 41st.
    let mut refused = None;
    for i in 0..60 {
        let path = format!("/api/users/audit-anonymous-{i}");
        if c.get(gw.url(&path)).send().await.unwrap().status() == 429 {
            refused = Some(path);
            break;
        }
    }
    let path = refused.expect("the anonymous budget never refused");
    let line = gw.audit_line(&path).await;
    assert_eq!(line["status"], 429, "{line}");
    assert!(
        line["denied_by"].is_null() && line["reason"].is_null(),
        "{line}"
    );
    assert_eq!(line["details"], "local_rate_limited", "{line}");
}

/// `token` with one character of its signature changed: well-formed, not signed by the key.
fn tampered(token: &str) -> String {
    let (head, signature) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<u8> = signature.bytes().collect();
    let at = sig.len() / 2;
    sig[at] = if sig[at] == b'A' { b'B' } else { b'A' };
    format!("{head}.{}", String::from_utf8(sig).unwrap())
}
