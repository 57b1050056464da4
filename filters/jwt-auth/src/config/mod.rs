//! The plugin configuration: Envoy `jwt_authn`'s field names where they exist, validated once
//! into typed providers and rules. Errors name the field (`providers.idp.remote_jwks.path`).
//!
//! Durations are Envoy's JSON form (`"600s"`, `"1.5s"`) or a plain number of seconds.
//!
//! This module holds the validated types; `raw` the configuration as written (serde types,
//! unknown fields refused everywhere), `validate` and `rules` turn one into the other.

mod introspection;
mod native;
mod raw;
mod rules;
mod validate;

use crate::claims::ClaimPolicy;
pub use crate::identity::ClaimHeader;
pub use crate::introspection::IntrospectionConfig;
use crate::jwks::{KeyPolicy, KeySet};
use crate::jwks_cache::JwksPolicy;
pub use crate::revocation::RevocationConfig;
use crate::rules::Rule;
use crate::token::TokenSources;
use filter_core::route::RouteBinding;
use filter_core::{parse_json_config, ConfigError};
pub use rules::PUBLIC;
use std::sync::Arc;

pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
pub const DEFAULT_REALM: &str = "edgegate";
pub const USER_ID_HEADER: &str = "x-user-id";
pub const DEFAULT_TENANT_HEADER: &str = "x-tenant-id";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub providers: Vec<Provider>,
    /// Deprecated: rules chosen by their own matchers (first match wins; no match is public).
    pub rules: Vec<Rule>,
    /// Named requirements chosen by the route Envoy matched (`None`: the matchers decide).
    /// A route that names none is refused unless Envoy answers it itself.
    pub routes: Option<RouteBinding<Rule>>,
    pub max_token_bytes: usize,
    pub realm: String,
    pub bypass_cors_preflight: bool,
    pub token_cache_entries: usize,
    pub token_cache_max_ttl_secs: u64,
    /// Longer tokens are verified but not cached (native `jwt_max_token_size`).
    pub token_cache_max_token_bytes: usize,
    /// Every header this filter may set upstream: removed from every request first.
    pub owned_headers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub claims: ClaimPolicy,
    pub keys: KeySource,
    pub sources: TokenSources,
    pub forward: bool,
    pub forward_payload_header: Option<String>,
    /// `=`-pad the payload in `forward_payload_header` (native `pad_forward_payload_header`).
    pub pad_forward_payload_header: bool,
    /// The identity headers, each from a vetted claim ([`crate::identity`]): `sub` into
    /// `x-user-id` first, then `claim_to_headers`, then the tenant header.
    pub claim_headers: Vec<ClaimHeader>,
    /// Checked against the revocation list synced from this service.
    pub revocation: Option<RevocationConfig>,
    /// Limits on the keys of this provider's JWKS (local or remote).
    pub key_policy: KeyPolicy,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    Local(Arc<KeySet>),
    Remote(RemoteJwks),
    /// Opaque tokens checked by the authorization server (RFC 7662).
    Introspect(Arc<IntrospectionConfig>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    /// `:authority` of the fetch (from `uri`, else the cluster name).
    pub authority: String,
    pub path: String,
    pub policy: JwksPolicy,
}

impl FilterConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: raw::RawConfig = parse_json_config(bytes)?;
        raw.validate()
    }

    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }
}
