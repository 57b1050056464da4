//! Each source on its own: what it resolves, what it skips, what it refuses, and its
//! configuration errors.

use super::compile::parse_sha256_hex;
use super::*;
use crate::config::SourceConfig;
use filter_core::ConfigError;

const RESERVED: Reserved<'static> = Reserved {
    tenant_header: "x-tenant-id",
    plan_header: Some("x-tenant-plan"),
    max_len: 64,
};

fn source(json: &str) -> Source {
    let config: SourceConfig = serde_json::from_str(json).unwrap();
    Source::compile(&config, &RESERVED).unwrap()
}

fn source_err(json: &str) -> ConfigError {
    let config: SourceConfig = serde_json::from_str(json).unwrap();
    Source::compile(&config, &RESERVED).unwrap_err()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn req(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::from([(":method", "GET"), (":path", "/"), (":authority", "gw")]);
    for (n, v) in pairs {
        if n.starts_with(':') {
            h.set(n, v);
        } else {
            h.append(n, v);
        }
    }
    h
}

/// The tenant a source finds, or None (skipped or invalid).
fn found<'s>(s: &'s Source, pairs: &[(&str, &str)]) -> Option<Resolved<'s>> {
    s.resolve(&req(pairs), 64, &Context::at(NOW)).found()
}

/// The host's clock in these tests: 2026-07-01T00:00:00Z.
const NOW: u64 = 1_782_864_000_000;

#[test]
fn claim_header_single_valid_value() {
    let s = source(r#"{"claim": {"header": "X-JWT-Tenant", "plan_header": "x-jwt-plan"}}"#);
    let r = found(&s, &[("x-jwt-tenant", "acme"), ("x-jwt-plan", "pro")]).unwrap();
    assert_eq!(
        (r.tenant.as_str(), r.plan.as_deref(), r.source),
        ("acme", Some("pro"), SourceKind::Claim)
    );
    assert_eq!(r.consumed, None);
    // A bad plan is dropped, the tenant stays.
    let r = found(&s, &[("x-jwt-tenant", "acme"), ("x-jwt-plan", "p r o")]).unwrap();
    assert_eq!(r.plan, None);
    // Two copies, an invalid id, or none: nothing, and the next source is tried.
    let skip =
        |pairs: &[(&str, &str)]| s.resolve(&req(pairs), 64, &Context::at(NOW)) == Resolution::Skip;
    assert!(skip(&[
        ("x-jwt-tenant", "acme"),
        ("x-jwt-tenant", "globex")
    ]));
    assert!(skip(&[("x-jwt-tenant", "acme, globex")]));
    assert!(skip(&[]));
}

#[test]
fn api_keys_compare_digests_and_are_consumed() {
    let json = format!(
        r#"{{"api_key": {{"keys": [
            {{"sha256": "{}", "tenant": "acme", "plan": "pro"}},
            {{"sha256": "{}", "tenant": "globex"}}]}}}}"#,
        sha256_hex("key-acme"),
        sha256_hex("key-globex").to_ascii_uppercase()
    );
    let s = source(&json);
    let r = found(&s, &[("x-api-key", "key-acme")]).unwrap();
    assert_eq!(
        (r.tenant.as_str(), r.plan.as_deref(), r.consumed),
        ("acme", Some("pro"), Some("x-api-key"))
    );
    let r = found(&s, &[("X-Api-Key", "key-globex")]).unwrap();
    assert_eq!((r.tenant.as_str(), r.plan), ("globex", None));
    assert_eq!(
        s.resolve(&req(&[]), 64, &Context::at(NOW)),
        Resolution::Skip,
        "no key"
    );
    // A key that is presented and does not verify is refused, not skipped.
    let invalid = |pairs: &[(&str, &str)]| s.resolve(&req(pairs), 64, &Context::at(NOW));
    let unknown = Resolution::Invalid(KeyRefusal::Unknown);
    assert_eq!(invalid(&[("x-api-key", "key-acme ")]), unknown);
    assert_eq!(invalid(&[("x-api-key", "nope")]), unknown);
    assert_eq!(invalid(&[("x-api-key", "")]), unknown);
    assert_eq!(
        invalid(&[("x-api-key", "key-acme"), ("x-api-key", "key-acme")]),
        Resolution::Invalid(KeyRefusal::Repeated),
        "a repeated key header is ambiguous"
    );
    // Outside the source's match the key is not this source's business.
    let scoped = source(&format!(
        r#"{{"api_key": {{"match": {{"path_prefix": "/api"}}, "keys": [{{"sha256": "{}", "tenant": "acme"}}]}}}}"#,
        sha256_hex("k")
    ));
    assert_eq!(
        scoped.resolve(&req(&[("x-api-key", "nope")]), 64, &Context::at(NOW)),
        Resolution::Skip
    );
    let keep = source(&format!(
        r#"{{"api_key": {{"header": "x-key", "remove": false, "keys": [{{"sha256": "{}", "tenant": "acme"}}]}}}}"#,
        sha256_hex("k")
    ));
    assert_eq!(found(&keep, &[("x-key", "k")]).unwrap().consumed, None);
}

/// Rotation: a tenant holds an old key (with `not_after`) and a new one; both verify until
/// the old one's instant, from which only the new one does.
#[test]
fn rotated_keys_verify_until_their_not_after() {
    let json = format!(
        r#"{{"api_key": {{"keys": [
            {{"tenant": "acme", "plan": "pro", "hashes": [
                {{"sha256": "{}"}},
                {{"sha256": "{}", "not_after": "2026-07-01T00:00:10Z"}}]}},
            {{"sha256": "{}", "tenant": "globex", "not_after": {}}}]}}}}"#,
        sha256_hex("acme-new"),
        sha256_hex("acme-old"),
        sha256_hex("globex-only"),
        NOW / 1000 + 5,
    );
    let s = source(&json);
    let at = |key: &str, now: u64| s.resolve(&req(&[("x-api-key", key)]), 64, &Context::at(now));
    for key in ["acme-new", "acme-old"] {
        let Resolution::Tenant(r) = at(key, NOW + 9_999) else {
            panic!("{key} before the old key's not_after");
        };
        assert_eq!(
            (r.tenant.as_str(), r.plan.as_deref()),
            ("acme", Some("pro"))
        );
    }
    let expired = Resolution::Invalid(KeyRefusal::Expired);
    assert_eq!(at("acme-old", NOW + 10_000), expired, "from not_after on");
    assert_eq!(at("acme-old", u64::MAX), expired);
    assert!(matches!(at("acme-new", u64::MAX), Resolution::Tenant(_)));
    // Unix seconds work the same way.
    assert!(matches!(
        at("globex-only", NOW + 4_999),
        Resolution::Tenant(_)
    ));
    assert_eq!(at("globex-only", NOW + 5_000), expired);
    assert_eq!(KeyRefusal::Expired.reason(), "expired_api_key");
}

#[test]
fn host_label_before_the_suffix() {
    let s = source(r#"{"host": {"suffix": ".API.example.com", "plan": "free"}}"#);
    let r = found(&s, &[(":authority", "acme.api.example.com")]).unwrap();
    assert_eq!(
        (r.plan.as_deref(), r.source),
        (Some("free"), SourceKind::Host)
    );
    let tenant = |host: &str| found(&s, &[(":authority", host)]).map(|r| r.tenant);
    assert_eq!(tenant("acme.api.example.com").as_deref(), Some("acme"));
    assert_eq!(tenant("ACME.api.example.com:8443").as_deref(), Some("acme"));
    assert_eq!(tenant("ACME.api.example.com.").as_deref(), Some("acme"));
    assert_eq!(tenant("acme.api.example.com:8080").as_deref(), Some("acme"));
    assert_eq!(
        tenant("Acme.API.Example.Com.:8080").as_deref(),
        Some("acme")
    );
    assert_eq!(
        tenant("acme.api.example.com.."),
        None,
        "one trailing dot only"
    );
    assert_eq!(tenant("a.b.api.example.com"), None, "one label only");
    assert_eq!(tenant("api.example.com"), None);
    assert_eq!(tenant(".api.example.com"), None);
    assert_eq!(tenant("acme.api.example.com.evil.net"), None);
    assert_eq!(tenant("acme_api.example.com"), None);
}

#[test]
fn path_segment_and_match() {
    let s = source(r#"{"path": {"segment": 1, "match": {"path_prefix": "/t/"}}}"#);
    let tenant = |path: &str| found(&s, &[(":path", path)]).map(|r| r.tenant);
    assert_eq!(tenant("/t/acme/orders?x=1").as_deref(), Some("acme"));
    assert_eq!(tenant("/t/acme").as_deref(), Some("acme"));
    assert_eq!(tenant("/t/"), None, "empty segment");
    assert_eq!(
        tenant("/t/ac%20me/x"),
        None,
        "encoded bytes are not id characters"
    );
    assert_eq!(tenant("/orders/acme"), None, "outside the match");
}

#[test]
fn default_tenant() {
    let s = source(r#"{"default": {"tenant": "public", "plan": "free"}}"#);
    assert!(s.always_resolves());
    let r = found(&s, &[]).unwrap();
    assert_eq!(
        (r.tenant.as_str(), r.plan.as_deref(), r.source),
        ("public", Some("free"), SourceKind::Default)
    );
    assert!(
        !source(r#"{"default": {"tenant": "p", "match": {"path_prefix": "/p"}}}"#)
            .always_resolves()
    );
}

#[test]
fn bad_sources_name_the_field_and_never_echo_keys() {
    let e = source_err(r#"{"claim": {"header": "x-tenant-id"}}"#);
    assert_eq!(e.field, "claim.header");
    assert!(e.reason.contains("every client copy"), "{}", e.reason);
    let e =
        source_err(r#"{"api_key": {"keys": [{"sha256": "my-secret-api-key", "tenant": "acme"}]}}"#);
    assert_eq!(e.field, "api_key.keys[0].sha256");
    assert!(!e.to_string().contains("my-secret-api-key"), "{e}");
    let e = source_err(
        r#"{"api_key": {"keys": [{"tenant": "acme", "hashes": [{"sha256": "sk_live_secret"}]}]}}"#,
    );
    assert_eq!(e.field, "api_key.keys[0].hashes[0].sha256");
    assert!(!e.to_string().contains("sk_live_secret"), "{e}");
    let digest = "ab".repeat(32);
    for (keys, field, reason) in [
        (
            format!(r#"{{"tenant": "acme", "sha256": "{digest}", "not_after": "tomorrow"}}"#),
            "api_key.keys[0].not_after",
            "RFC 3339",
        ),
        (
            format!(
                r#"{{"tenant": "acme", "hashes": [{{"sha256": "{digest}", "not_after": -5}}]}}"#
            ),
            "api_key.keys[0].hashes[0].not_after",
            "Unix seconds",
        ),
        (
            format!(r#"{{"tenant": "acme", "sha256": "{digest}", "hashes": []}}"#),
            "api_key.keys[0].hashes",
            "not both",
        ),
        (
            r#"{"tenant": "acme", "hashes": []}"#.to_string(),
            "api_key.keys[0].hashes",
            "at least one",
        ),
        (
            format!(
                r#"{{"tenant": "acme", "not_after": 1, "hashes": [{{"sha256": "{digest}"}}]}}"#
            ),
            "api_key.keys[0].not_after",
            "each of `hashes`",
        ),
        (
            r#"{"tenant": "acme"}"#.to_string(),
            "api_key.keys[0].sha256",
            "missing",
        ),
        (
            format!(
                r#"{{"tenant": "acme", "hashes": [{{"sha256": "{digest}"}}, {{"sha256": "{digest}"}}]}}"#
            ),
            "api_key.keys[0].hashes[1].sha256",
            "listed twice",
        ),
    ] {
        let e = source_err(&format!(r#"{{"api_key": {{"keys": [{keys}]}}}}"#));
        assert_eq!(e.field, field, "{keys}");
        assert!(e.reason.contains(reason), "{keys}: {}", e.reason);
    }
    let e = source_err(r#"{"host": {"suffix": "api.example.com"}}"#);
    assert_eq!(e.field, "host.suffix");
    let e = source_err(r#"{"path": {"segment": 1, "match": {"path_prefix": "t"}}}"#);
    assert_eq!(e.field, "path.match.path_prefix");
    let e = source_err(r#"{"default": {"tenant": "no spaces"}}"#);
    assert_eq!(e.field, "default.tenant");
}

#[test]
fn trust_levels() {
    let credentials: Vec<_> = SourceKind::ALL
        .iter()
        .filter(|k| k.is_credential())
        .map(|k| k.name())
        .collect();
    assert_eq!(credentials, ["claim", "api_key", "client_cert"]);
}

#[test]
fn hex_digests() {
    assert_eq!(parse_sha256_hex(&"ab".repeat(32)), Some([0xab; 32]));
    assert_eq!(parse_sha256_hex(&"AB".repeat(32)), Some([0xab; 32]));
    assert_eq!(parse_sha256_hex(&"ab".repeat(31)), None);
    assert_eq!(parse_sha256_hex(&format!("{}zz", "ab".repeat(31))), None);
    assert_eq!(parse_sha256_hex(&format!("+{}", "a".repeat(63))), None);
}

fn peer(uri: Option<&str>, subject: Option<&str>) -> Context {
    Context {
        now_ms: NOW,
        peer_uri_san: uri.map(str::to_string),
        peer_subject: subject.map(str::to_string),
    }
}

#[test]
fn client_cert_maps_the_verified_certificates_uri_san_or_subject() {
    let s = source(
        r#"{"client_cert": {"identities": [
            {"uri": "spiffe://partners.example.com/acme", "tenant": "acme", "plan": "pro"},
            {"subject": "CN=globex-partner,O=Globex", "tenant": "globex"}]}}"#,
    );
    let at = |ctx: &Context| s.resolve(&req(&[]), 64, ctx).found();
    let acme = at(&peer(
        Some("spiffe://partners.example.com/acme"),
        Some("CN=x"),
    ))
    .unwrap();
    assert_eq!(
        (acme.tenant.as_str(), acme.plan.as_deref(), acme.source),
        ("acme", Some("pro"), SourceKind::ClientCert)
    );
    assert!(acme.source.is_credential());
    let globex = at(&peer(
        Some("spiffe://elsewhere/x"),
        Some("CN=globex-partner,O=Globex"),
    ));
    assert_eq!(
        globex.unwrap().tenant,
        "globex",
        "by subject when the URI is unknown"
    );
    // No certificate, an unknown one, or a near miss: nothing (the next source is tried).
    assert_eq!(at(&peer(None, None)), None);
    assert_eq!(
        at(&peer(Some("spiffe://partners.example.com/acme2"), None)),
        None
    );
    assert_eq!(
        at(&peer(None, Some("CN=globex-partner,O=Globex,OU=x"))),
        None
    );
    // Headers never stand in for the certificate.
    let forged = req(&[
        (
            "x-forwarded-client-cert",
            "URI=spiffe://partners.example.com/acme",
        ),
        ("x-client-cert-uri", "spiffe://partners.example.com/acme"),
    ]);
    assert_eq!(s.resolve(&forged, 64, &peer(None, None)), Resolution::Skip);
    assert!(s.reads_client_cert());
}

#[test]
fn client_cert_configuration_errors_name_the_field() {
    let cases = [
        (r#"{"identities": []}"#, "client_cert.identities"),
        (
            r#"{"identities": [{"tenant": "acme"}]}"#,
            "client_cert.identities[0].uri",
        ),
        (
            r#"{"identities": [{"uri": "spiffe://a/b", "subject": "CN=a", "tenant": "acme"}]}"#,
            "client_cert.identities[0].subject",
        ),
        (
            r#"{"identities": [{"uri": "not a uri", "tenant": "acme"}]}"#,
            "client_cert.identities[0].uri",
        ),
        (
            r#"{"identities": [{"subject": "CN=a\u0001", "tenant": "acme"}]}"#,
            "client_cert.identities[0].subject",
        ),
        (
            r#"{"identities": [{"uri": "spiffe://a/b", "tenant": "bad tenant"}]}"#,
            "client_cert.identities[0].tenant",
        ),
        (
            r#"{"identities": [{"uri": "spiffe://a/b", "tenant": "a"},
                               {"uri": "spiffe://a/b", "tenant": "b"}]}"#,
            "client_cert.identities[1].uri",
        ),
    ];
    for (body, field) in cases {
        let e = source_err(&format!(r#"{{"client_cert": {body}}}"#));
        assert_eq!(e.field, field, "{body}: {e}");
    }
}

#[test]
fn the_context_reads_the_peer_certificate_only_when_asked() {
    let reads = std::cell::Cell::new(0);
    let property = |path: &[&str]| {
        reads.set(reads.get() + 1);
        match path {
            ["connection", "uri_san_peer_certificate"] => Some(b"spiffe://p/acme".to_vec()),
            ["connection", "subject_peer_certificate"] => Some(Vec::new()),
            _ => None,
        }
    };
    assert_eq!(Context::read(NOW, false, property), Context::at(NOW));
    assert_eq!(reads.get(), 0);
    let ctx = Context::read(NOW, true, property);
    assert_eq!(ctx.peer_uri_san.as_deref(), Some("spiffe://p/acme"));
    assert_eq!(ctx.peer_subject, None, "an empty subject is no subject");
}
