//! Helpers several modules use: the writer's token and the identity headers jwt_auth forwards.

use crate::prelude::*;

/// A token for user-1 of acme that may read and write orders: the tests are about what else a
/// legitimate user can do.
pub fn writer_token() -> String {
    token("user-1", "acme", "orders:read orders:write")
}

/// The user and org identities jwt_auth forwards: `x-user-id` and every provider's
/// `claim_to_headers` header, lower-cased.
pub fn jwt_identity_headers(gw: &GatewayConfig) -> BTreeSet<String> {
    let mut out = BTreeSet::from([jwt_auth::config::USER_ID_HEADER.to_string()]);
    let jwt = gw.wasm_config("jwt_auth");
    for provider in jwt["providers"].as_object().unwrap().values() {
        for mapping in provider["claim_to_headers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.insert(lower(&mapping["header_name"]));
        }
    }
    out
}

pub fn lower(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_ascii_lowercase()
}
