//! Configuration errors name the field.

use super::*;

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
