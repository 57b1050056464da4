//! The parts of Envoy's native `jwt_authn` configuration (`JwtAuthentication`, its proto-JSON
//! field names) that have no twin among our own names: read here, mapped onto ours in
//! `validate`. Fields a wasm filter cannot honour are read only to be refused, by name, with
//! what to use instead ([`refuse`]): a pasted config never loses a setting silently.

use super::raw::{Millis, RawProvider};
use super::validate::err;
use filter_core::ConfigError;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The `@type` of a native filter's `typed_config`, accepted when a config is pasted with it.
pub(super) const TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";

/// `remote_jwks.http_uri` (`config.core.v3.HttpUri`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpUri {
    pub(super) uri: String,
    pub(super) cluster: String,
    #[serde(default)]
    pub(super) timeout: Option<Millis>,
}

/// `remote_jwks.async_fetch`. Keys are always fetched in the background and ahead of expiry
/// here; `fast_listener` has nothing to change (the listener never waits for keys: a request
/// that arrives before the first keys waits for them, bounded by the fetch timeout).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAsyncFetch {
    #[serde(default)]
    #[allow(dead_code)] // read to type-check it; the behaviour it selects is always on
    pub(super) fast_listener: Option<bool>,
    /// Sets the first delay of the fetch backoff.
    #[serde(default)]
    pub(super) failed_refetch_duration: Option<Millis>,
}

/// `remote_jwks.retry_policy` (`config.core.v3.RetryPolicy`): its backoff bounds ours.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetryPolicy {
    #[serde(default)]
    pub(super) retry_back_off: Option<RawBackOff>,
    /// Fetch failures are retried with the backoff until the keys come (the last good keys
    /// keep serving meanwhile); a count is accepted and bounds nothing more.
    #[serde(default)]
    #[allow(dead_code)] // read to type-check it
    pub(super) num_retries: Option<u32>,
    /// Fetches are retried on any failure.
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) retry_on: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackOff {
    pub(super) base_interval: Millis,
    #[serde(default)]
    pub(super) max_interval: Option<Millis>,
}

/// `jwt_cache_config`: the verified-token cache is one per filter, so the largest provider
/// size is its size.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwtCacheConfig {
    #[serde(default)]
    pub(super) jwt_cache_size: Option<usize>,
    /// Tokens longer than this are verified but not cached (Envoy's default 4096).
    #[serde(default)]
    pub(super) jwt_max_token_size: Option<usize>,
}

/// `requires.provider_and_audiences`: the provider, with these audiences instead of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProviderAudiences {
    pub(super) provider_name: String,
    #[serde(default, deserialize_with = "super::raw::one_or_many")]
    pub(super) audiences: Vec<String>,
}

const METADATA: &str = "a wasm filter cannot write Envoy's dynamic metadata for other filters; \
     forward the payload with forward_payload_header or claims with claim_to_headers";

/// The first refused field that is set: `(field, why and what to use)`.
pub(super) fn refused_provider_field(f: &RawProvider) -> Option<(&'static str, &'static str)> {
    let set = [
        (
            "payload_in_metadata",
            f.payload_in_metadata.is_some(),
            METADATA,
        ),
        (
            "header_in_metadata",
            f.header_in_metadata.is_some(),
            METADATA,
        ),
        (
            "failed_status_in_metadata",
            f.failed_status_in_metadata.is_some(),
            METADATA,
        ),
        (
            "normalize_payload_in_metadata",
            f.normalize_payload_in_metadata.is_some(),
            METADATA,
        ),
        (
            "clear_route_cache",
            f.clear_route_cache == Some(true),
            "routes are chosen before jwt_auth sets its headers and are not chosen again; \
             route on the token with a rule's requirement instead, or set false",
        ),
    ];
    set.into_iter()
        .find(|(_, given, _)| *given)
        .map(|(field, _, why)| (field, why))
}

/// Top-level native fields that are refused, and `@type` checked.
pub(super) fn refuse_top_level(
    type_url: Option<&str>,
    filter_state_rules: bool,
    strip_failure_response: Option<bool>,
    stat_prefix: Option<&str>,
) -> Result<(), ConfigError> {
    if let Some(t) = type_url.filter(|t| *t != TYPE_URL) {
        return Err(err("@type", format!("{t:?} is not {TYPE_URL:?}")));
    }
    if filter_state_rules {
        return Err(err(
            "filter_state_rules",
            "a wasm filter cannot read another filter's filter state; name the requirement on \
             the route (route metadata edgegate.jwt, or routes) instead",
        ));
    }
    if strip_failure_response == Some(true) {
        return Err(err(
            "strip_failure_response",
            "refusals always carry a JSON error body and a WWW-Authenticate header without \
             token details (docs/jwt-auth.md); set false or remove it",
        ));
    }
    if stat_prefix.is_some() {
        return Err(err(
            "stat_prefix",
            "jwt_auth's metrics have fixed names (jwt_auth_*, docs/jwt-auth.md#metrics); \
             remove it",
        ));
    }
    Ok(())
}

/// A named requirement's reference from a rule.
pub(super) fn unknown_requirement(name: &str) -> ConfigError {
    err(
        "requirement_name",
        format!("{name:?} is not a key of requirement_map"),
    )
}
