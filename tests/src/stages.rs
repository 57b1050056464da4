//! The gateway's three wasm stages configured as `envoy/gateway.yaml` configures them, as JSON,
//! for the tests and benchmark that compare the three separate filters with `dist/bundle.wasm`.
//!
//! Differences from the YAML, each forced by the setting: the issuer is the test tokens'
//! (`jwt_auth::testing`); the keys come from the caller (a JWKS endpoint, or inline where no
//! cluster exists); jwt_auth writes the tenant claim to `x-jwt-tenant`, which the tenant stage's
//! `claim` source reads and turns into `x-tenant-id` (a claim source may not read the header the
//! tenant stage itself owns).

use serde_json::{json, Value};

/// A remote JWKS on the `jwks` cluster (as in the gateway).
pub fn remote_keys() -> Value {
    json!({ "remote_jwks": {
        "cluster": "jwks",
        "uri": "http://idp.edgegate.localhost/.well-known/jwks.json",
        "timeout": "2s", "cache_duration": "600s", "max_stale": "86400s"
    }})
}

/// The same keys inline (benchmarks: no cluster to fetch from).
pub fn inline_keys(jwks: &Value) -> Value {
    json!({ "local_jwks": { "inline": jwks.to_string() } })
}

/// jwt_auth: `keys` is [`remote_keys`] or [`inline_keys`].
pub fn jwt_auth(keys: &Value) -> Value {
    let mut provider = json!({
        "issuer": "https://idp",
        "audiences": ["api"],
        "require_expiration": true,
        "max_lifetime": "3600s",
        "from_headers": [{ "name": "authorization", "value_prefix": "Bearer " }],
        "claim_to_headers": [{ "header_name": "x-org-id", "claim_name": "org.id" }],
        "tenant_claim": "tenant",
        "tenant_header": "x-jwt-tenant"
    });
    for (k, v) in keys.as_object().into_iter().flatten() {
        provider[k] = v.clone();
    }
    json!({
        "realm": "edgegate",
        "bypass_cors_preflight": false,
        "providers": { "idp": provider },
        "rules": [
            { "match": { "host": "orders.api.localhost", "methods": ["GET", "HEAD", "OPTIONS"] }, "requires": { "provider_name": "idp" } },
            { "match": { "host": "orders.api.localhost" }, "requires": { "provider_name": "idp" }, "required_scopes": ["orders:write"] },
            { "match": { "path_prefix": "/api/v0" } },
            { "match": { "path_regex": "/api/(v[0-9]+/)?orders(/.*)?", "methods": ["GET", "HEAD", "OPTIONS"] }, "requires": { "provider_name": "idp" } },
            { "match": { "path_regex": "/api/(v[0-9]+/)?orders(/.*)?" }, "requires": { "provider_name": "idp" }, "required_scopes": ["orders:write"] },
            { "match": { "path_prefix": "/" }, "requires": { "provider_name": "idp" } }
        ]
    })
}

/// tenant_cache_key's request stage: the tenant from jwt_auth's verified claim; public routes
/// (no token) go on without a tenant.
pub fn tenant_request() -> Value {
    json!({
        "stage": "request",
        "tenant_header": "x-tenant-id",
        "sources": [{ "claim": { "header": "x-jwt-tenant" } }],
        "unresolved": { "action": "anonymous" }
    })
}

/// tenant_cache_key's response stage (the cluster's upstream filter, before Envoy's cache).
pub fn tenant_response() -> Value {
    json!({ "stage": "response", "tenant_header": "x-tenant-id" })
}

/// transform: header hygiene and internal fields stripped from user documents.
pub fn transform() -> Value {
    json!({
        "max_body_bytes": 1048576,
        "rules": [{
            "name": "users",
            "match": { "path_prefix": "/api/users" },
            "request": { "headers": { "set": { "x-gateway-route": "users" }, "remove": ["accept-encoding"] } },
            "response": {
                "headers": { "remove": ["server", "x-powered-by"], "set": { "x-gateway": "edgegate" } },
                "body": { "strip": ["password_hash", "internal"] }
            }
        }],
        "default": {
            "response": { "headers": { "remove": ["server", "x-powered-by"], "set": { "x-gateway": "edgegate" } } }
        }
    })
}

/// The bundle's configuration: the three stages' own configurations as its sections.
pub fn bundle(keys: &Value) -> Value {
    json!({
        "jwt_auth": jwt_auth(keys),
        "tenant_cache_key": tenant_request(),
        "transform": transform()
    })
}

/// The bundle with every stage's policy taken from the route (envoy/gateway.yaml's route-bound
/// configuration): the same requirements, tenant policy and transform rule, named.
pub fn bundle_by_route(keys: &Value) -> Value {
    let mut jwt = jwt_auth(keys);
    let object = jwt.as_object_mut().expect("an object");
    object.remove("rules");
    object.insert(
        "requirements".into(),
        json!({
            "user": { "requires": { "provider_name": "idp" } },
            "orders_write": { "requires": { "provider_name": "idp" }, "required_scopes": ["orders:write"] }
        }),
    );
    let mut tenant = tenant_request();
    tenant["policies"] = json!({ "tenant": {} });
    let mut tr = transform();
    let mut rule = tr["rules"][0].clone();
    if let Some(r) = rule.as_object_mut() {
        r.remove("name");
        r.remove("match");
    }
    let object = tr.as_object_mut().expect("an object");
    object.remove("rules");
    object.insert("transform_rules".into(), json!({ "users": rule }));
    json!({ "jwt_auth": jwt, "tenant_cache_key": tenant, "transform": tr })
}

/// [`bundle_by_route`] with each stage's policy bound to the route's name (`users`) instead of
/// read from its metadata: how Istio binds them, and one cheaper property read.
pub fn bundle_by_route_name(keys: &Value) -> Value {
    let mut c = bundle_by_route(keys);
    c["jwt_auth"]["routes"] = json!({ "users": "user" });
    c["tenant_cache_key"]["routes"] = json!({ "users": "tenant" });
    c["transform"]["routes"] = json!({ "users": "users" });
    c
}

/// The bundle as the response stage alone (the cluster's upstream filter).
pub fn bundle_response() -> Value {
    json!({ "tenant_cache_key": tenant_response() })
}
