//! The provider config, the Envoy set-up (with or without revocation), and the request and refusal helpers.

use crate::prelude::*;

pub const REALM: &str = "api";

/// The provider the corpus is written for, its keys from the `jwks` cluster; `remote` entries
/// override the `remote_jwks` defaults.
pub fn config(remote: Value) -> Value {
    let mut remote_jwks = json!({
        "cluster": "jwks",
        "uri": "http://idp.test/.well-known/jwks.json",
        "timeout": "2s",
    });
    for (k, v) in remote.as_object().unwrap() {
        remote_jwks[k] = v.clone();
    }
    json!({
        "realm": REALM,
        "providers": {"idp": {
            "issuer": "https://idp",
            "audiences": ["api"],
            "require_expiration": true,
            "max_lifetime": "3600s",
            "remote_jwks": remote_jwks,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"],
            "claim_to_headers": [{"header_name": "x-org-id", "claim_name": "org.id"}],
            "tenant_claim": "tenant",
        }},
        "rules": [
            {"match": {"path_prefix": "/public"}},
            {"match": {"path_prefix": "/orders", "methods": ["POST"]},
             "requires": {"provider_name": "idp"}, "required_scopes": ["orders:write"]},
            {"match": {"path_prefix": "/"}, "requires": {"provider_name": "idp"}},
        ],
    })
}

pub async fn gateway(jwks: &JwksServer, up: &Upstream, config: &Value) -> Envoy {
    builder(jwks.port(), up.port(), config)
        .start()
        .await
        .unwrap()
}

pub fn builder(jwks_port: u16, upstream_port: u16, config: &Value) -> EnvoyBuilder {
    builder_with_revocation(jwks_port, upstream_port, 9, config)
}

pub fn builder_with_revocation(
    jwks_port: u16,
    upstream_port: u16,
    revocation_port: u16,
    config: &Value,
) -> EnvoyBuilder {
    EnvoyBuilder::from_repo_file("jwt", "tests/envoy/jwt.yaml")
        .unwrap()
        .var(
            "HTTP_FILTERS",
            chain::with_router(vec![chain::wasm("jwt_auth", config).unwrap()]),
        )
        .var("UPSTREAM_PORT", upstream_port)
        .var("JWKS_PORT", jwks_port)
        .var("REVOCATION_PORT", revocation_port)
}

/// A valid token for `alg` (under its usual kid) with its own `jti`: distinct tokens keep the
/// verified-token cache out of the way, and revocation is by `jti`.
pub fn with_jti(alg: &str, t0: u64, jti: &str) -> String {
    let mut c = claims(t0);
    c["jti"] = json!(jti);
    sign(
        &json!({"alg": alg, "kid": jwt_auth::testing::kid_for(alg)}),
        &c,
    )
}

pub async fn get(envoy: &Envoy, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(envoy.url("main", path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

/// Asserts the RFC 6750 refusal for `expect`: status, `WWW-Authenticate`, JSON body.
pub async fn assert_denied(resp: reqwest::Response, expect: &Denial, what: &str) {
    assert_eq!(u32::from(resp.status().as_u16()), expect.status(), "{what}");
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        www.as_deref(),
        Some(expect.www_authenticate(REALM).as_str()),
        "{what}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], expect.error_code(), "{what}: {body}");
    assert_eq!(body["message"], expect.description, "{what}: {body}");
    assert!(
        !body["request_id"].as_str().unwrap_or("").is_empty(),
        "{what}: the request id is echoed: {body}"
    );
}
