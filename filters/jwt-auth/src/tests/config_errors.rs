//! Configuration errors name the field.

use super::*;

#[test]
fn config_errors_name_the_field() {
    let e = |json: &str| FilterConfig::parse(json.as_bytes()).unwrap_err();
    let remote = |extra: &str| {
        format!(
            r#"{{"providers": {{"idp": {{"remote_jwks": {{"cluster": "idp", "path": "/jwks"{extra}}}}}}}}}"#
        )
    };
    let err = e(&remote(r#", "cache_duration": "ten minutes""#));
    assert_eq!(err.field, "providers.idp.remote_jwks.cache_duration");
    assert!(err.reason.contains("600s"), "{}", err.reason);
    assert_eq!(
        e(&remote(r#", "cache_duration": "0.1s""#)).field,
        "providers.idp.remote_jwks.cache_duration"
    );
    assert_eq!(
        e(&remote(r#", "timeuot": "1s""#)).field,
        "providers.idp.remote_jwks.timeuot"
    );
    let ok =
        FilterConfig::parse(remote(r#", "cache_duration": 300, "max_stale": "3600s""#).as_bytes())
            .unwrap();
    match &ok.providers[0].keys {
        crate::config::KeySource::Remote(r) => {
            assert_eq!(
                (r.policy.cache_duration_ms, r.policy.max_stale_ms),
                (300_000, 3_600_000)
            );
            assert_eq!((r.authority.as_str(), r.path.as_str()), ("idp", "/jwks"));
        }
        _ => panic!("remote expected"),
    }
    assert_eq!(
        ok.providers[0].sources,
        crate::token::TokenSources::default()
    );
    assert_eq!(e(r#"{"providers": {"idp": {}}}"#).field, "providers.idp");
    assert_eq!(
        e(r#"{"providers": {"idp": {"local_jwks": {"inline": "{\"keys\": []}"}}}}"#).field,
        "providers.idp.local_jwks.inline"
    );
    let unknown = e(
        r#"{"providers": {"idp": {"remote_jwks": {"cluster": "c", "path": "/j"}}},
        "rules": [{"requires": {"provider_name": "other"}}]}"#,
    );
    assert_eq!(unknown.field, "rules[0].requires.provider_name");
    let scopes_public = config_json(json!({}), json!([{"required_scopes": ["a"]}]));
    assert_eq!(e(&scopes_public).field, "rules[0].requires");
    let nested = config_json(
        json!({}),
        json!([{"requires": {"requires_any": {"requirements": [{"provider_name": "x"}]}}}]),
    );
    assert_eq!(
        e(&nested).field,
        "rules[0].requires.requires_any.requirements[0].provider_name"
    );
    let bad_match = config_json(json!({}), json!([{"match": {"path_prefix": "x"}}]));
    assert_eq!(e(&bad_match).field, "rules[0].match.path_prefix");
    let bad_header = config_json(
        json!({"claim_to_headers": [{"header_name": "x y", "claim_name": "a"}]}),
        json!([]),
    );
    assert_eq!(
        e(&bad_header).field,
        "providers.idp.claim_to_headers[0].header_name"
    );
    assert_eq!(
        e(&config_json(json!({}), json!([])).replace(r#""realm":"api""#, r#""realm":"a\"b""#))
            .field,
        "realm"
    );
}
