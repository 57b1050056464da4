//! The engine with a local JWKS: upstream headers, public routes, authorization, the attack
//! corpus end to end, and the verification cache.

use super::*;

#[test]
fn valid_token_sets_upstream_headers_and_strips_the_token() {
    let mut e = engine(json!({}));
    let t = token("ES256");
    let mut h = request("GET", "/things", Some(&t));
    h.append("x-user-id", "spoofed");
    let d = run(&mut e, &h);
    assert_eq!(d.outcome, Outcome::Allow);
    for owned in [
        "x-user-id",
        "x-tenant-id",
        "x-org-id",
        "x-jwt-payload",
        "authorization",
    ] {
        assert!(
            d.edits.contains(&HeaderEdit::Remove(owned.into())),
            "{owned}"
        );
    }
    let s = sets(&d);
    assert_eq!(s["x-user-id"], "user-1");
    assert_eq!(s["x-tenant-id"], "acme");
    assert_eq!(s["x-org-id"], "7");
    assert_eq!(s["x-jwt-payload"], t.split('.').nth(1).unwrap());
    assert_eq!((d.cache_hits, d.cache_misses), (0, 1));
    let again = run(&mut e, &h);
    assert_eq!((again.outcome, again.cache_hits), (Outcome::Allow, 1));
    // forward: true keeps the token.
    let mut fwd = engine(json!({"forward": true}));
    let d = run(&mut fwd, &h);
    assert!(!d
        .edits
        .contains(&HeaderEdit::Remove("authorization".into())));
}

#[test]
fn host_edits_skip_no_op_removals() {
    let mut e = engine(json!({}));
    let t = token("ES256");
    let mut h = request("GET", "/things", Some(&t));
    h.append("x-user-id", "spoofed");
    h.append("x-jwt-payload", "spoofed");
    let d = run(&mut e, &h);
    let calls = crate::engine::host_edits(&d.edits, &h);
    // The token's header goes. The spoofed owned headers are replaced by the sets (a set
    // replaces every value), so they need no removal; absent ones need none either.
    assert!(calls.contains(&&HeaderEdit::Remove("authorization".into())));
    assert!(!calls
        .iter()
        .any(|c| matches!(c, HeaderEdit::Remove(n) if n == "x-user-id")));
    assert!(!calls
        .iter()
        .any(|c| matches!(c, HeaderEdit::Remove(n) if n == "x-org-id")));
    assert!(calls.contains(&&HeaderEdit::Set("x-user-id".into(), "user-1".into())));
    assert_eq!(calls.len(), 5, "{calls:?}");
    // A spoofed owned header the filter does not set this time is still removed (an optional
    // tenant claim the token lacks: the token passes without the header).
    let mut e = engine(json!({"tenant_format": {"optional": true}}));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("tenant");
    let t = sign(&json!({"alg": "ES256", "kid": "ec-1"}), &c);
    let mut h = request("GET", "/things", Some(&t));
    h.append("x-tenant-id", "evil");
    let d = run(&mut e, &h);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(!sets(&d).contains_key("x-tenant-id"));
    let calls = crate::engine::host_edits(&d.edits, &h);
    assert!(calls.contains(&&HeaderEdit::Remove("x-tenant-id".into())));
}

#[test]
fn public_routes_and_preflight_still_strip_owned_headers() {
    let mut e = engine(json!({}));
    let mut h = request("GET", "/public/x", None);
    h.append("x-tenant-id", "evil");
    let d = run(&mut e, &h);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.edits.contains(&HeaderEdit::Remove("x-tenant-id".into())));
    assert!(sets(&d).is_empty());
    let mut pre = request("OPTIONS", "/things", None);
    pre.append("origin", "https://app");
    pre.append("access-control-request-method", "POST");
    assert_eq!(run(&mut e, &pre).outcome, Outcome::Allow);
    let plain_options = request("OPTIONS", "/things", None);
    assert_eq!(denial(&run(&mut e, &plain_options)), Denial::MISSING);
    // allow_missing: no token passes (sanitized), a bad token fails.
    let d = run(&mut e, &request("GET", "/optional", None));
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.edits.contains(&HeaderEdit::Remove("x-user-id".into())));
    assert_eq!(
        denial(&run(&mut e, &request("GET", "/optional", Some("a.b.c")))).reason,
        "malformed"
    );
}

#[test]
fn authorization_scopes_and_claims() {
    let mut e = engine(json!({}));
    let t = token("RS256");
    let d = denial(&run(&mut e, &request("POST", "/orders", Some(&t))));
    assert_eq!((d.status(), d.reason), (403, "scope"));
    assert!(d.www_authenticate("api").contains("insufficient_scope"));
    let mut c = claims();
    c["scope"] = json!("orders:read orders:write");
    let t2 = sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &c);
    assert_eq!(
        run(&mut e, &request("POST", "/orders", Some(&t2))).outcome,
        Outcome::Allow
    );
    let d = denial(&run(&mut e, &request("GET", "/admin", Some(&t))));
    assert_eq!((d.status(), d.reason), (403, "claim"));
}

/// The attack corpus, end to end: each must be refused with the stated reason.
#[test]
fn attack_corpus() {
    let mut e = engine(json!({"require_expiration": true, "max_lifetime": "3600s"}));
    let valid = token("RS256");
    let corpus = crate::testing::attack_corpus(NOW);
    assert!(corpus.len() >= 30);
    for case in corpus {
        let d = denial(&run(&mut e, &request("GET", "/x", Some(&case.token))));
        assert_eq!(d, case.expect, "{}", case.name);
        let status = if d.reason == "audience" { 403 } else { 401 };
        assert_eq!(d.status(), status, "{}", case.name);
        assert!(
            d.www_authenticate("api")
                .contains("error=\"invalid_token\""),
            "{}",
            case.name
        );
    }
    // Missing and empty bearer, two Authorization headers, header + query at once.
    let missing = denial(&run(&mut e, &request("GET", "/x", None)));
    assert_eq!(missing.www_authenticate("api"), r#"Bearer realm="api""#);
    let mut empty = request("GET", "/x", None);
    empty.append("authorization", "Bearer ");
    assert_eq!(denial(&run(&mut e, &empty)).reason, "malformed");
    let mut two = request("GET", "/x", Some(&valid));
    two.append("authorization", &format!("Bearer {valid}"));
    assert_eq!(denial(&run(&mut e, &two)).reason, "ambiguous");
    let mut q = engine(
        json!({"from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                              "from_params": ["access_token"]}),
    );
    let both = request("GET", &format!("/x?access_token={valid}"), Some(&valid));
    assert_eq!(denial(&run(&mut q, &both)).reason, "ambiguous");
    let query_only = request("GET", &format!("/x?a=1&access_token={valid}"), None);
    let d = run(&mut q, &query_only);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d
        .edits
        .contains(&HeaderEdit::Set(":path".into(), "/x?a=1".into())));
    // Lower-case scheme is accepted.
    let mut lower = request("GET", "/x", None);
    lower.append("authorization", &format!("bearer {valid}"));
    assert_eq!(run(&mut e, &lower).outcome, Outcome::Allow);
}

#[test]
fn cache_hits_still_enforce_exp_and_revocation() {
    struct RevokeAll;
    impl crate::engine::Revocation for RevokeAll {
        fn is_revoked(
            &self,
            _: &crate::config::Provider,
            _: &serde_json::Map<String, Value>,
        ) -> bool {
            true
        }
    }
    let mut e = engine(json!({"clock_skew_seconds": 0}));
    let t = token("EdDSA");
    let h = request("GET", "/x", Some(&t));
    assert_eq!(run(&mut e, &h).outcome, Outcome::Allow);
    let d = e.authenticate(
        &h,
        Governing::Matchers,
        NOW * 1000,
        &mut NoRemote,
        &RevokeAll,
    );
    assert_eq!((denial(&d), d.cache_hits), (Denial::REVOKED, 1));
    let later = e.authenticate(
        &h,
        Governing::Matchers,
        (NOW + 600) * 1000,
        &mut NoRemote,
        &NoRevocation,
    );
    assert_eq!((denial(&later).reason, later.cache_hits), ("expired", 0));
}
