//! The metrics tenant_cache_key defines, named in the scheme every filter of this project uses:
//! `<filter>.<name>` (Envoy shows them as `wasmcustom.<filter>.<name>`; Prometheus as
//! `envoy_wasmcustom_<filter>_<name>` with dots turned into underscores).

use crate::SourceKind;

/// Requests whose tenant a source resolved: `tenant_cache_key.resolved.<source>` (claim,
/// api_key, host, path, default).
pub fn resolved(kind: SourceKind) -> String {
    format!("tenant_cache_key.resolved.{}", kind.name())
}

/// Requests no source identified (anonymous or rejected).
pub const UNRESOLVED: &str = "tenant_cache_key.unresolved";
/// Unresolved requests answered with the configured status.
pub const REJECTED: &str = "tenant_cache_key.rejected";
/// Requests that arrived with the tenant or plan header set by the client (removed).
pub const FORGED_HEADER_REMOVED: &str = "tenant_cache_key.forged_header_removed";
/// Requests with an API key that did not verify (401).
pub const INVALID_API_KEY: &str = "tenant_cache_key.invalid_api_key";
/// Of those, keys past their `not_after` (a client still on a rotated-out key).
pub const EXPIRED_API_KEY: &str = "tenant_cache_key.expired_api_key";
/// Requests on cache routes whose identity headers were withheld from the upstream.
pub const IDENTITY_REMOVED: &str = "tenant_cache_key.identity_removed";
/// Credentialed requests without a tenant sent past the cache (`Cache-Control: no-cache`).
pub const CACHE_BYPASSED: &str = "tenant_cache_key.cache_bypassed";
/// Responses that got the tenant header added to `Vary`.
pub const VARY_ADDED: &str = "tenant_cache_key.vary_added";
/// Responses made `private`.
pub const PRIVATE_SET: &str = "tenant_cache_key.private_set";
/// Responses given a route's cache lifetime.
pub const TTL_SET: &str = "tenant_cache_key.ttl_set";
/// Streams admitted under the caps.
pub const STREAMS_ADMITTED: &str = "tenant_cache_key.streams.admitted";
/// Admitted streams that ended (their slot given back).
pub const STREAMS_RELEASED: &str = "tenant_cache_key.streams.released";
/// Streams refused (429) by the per-consumer cap.
pub const STREAMS_REFUSED_CONSUMER: &str = "tenant_cache_key.streams.refused.consumer";
/// Streams refused (429) by the per-tenant cap.
pub const STREAMS_REFUSED_TENANT: &str = "tenant_cache_key.streams.refused.tenant";
/// Streams refused (503) because the counts could not be written.
pub const STREAMS_UNAVAILABLE: &str = "tenant_cache_key.streams.unavailable";
/// Stream slots dropped because their holder stopped renewing them (a worker gone).
pub const STREAMS_EXPIRED: &str = "tenant_cache_key.streams.expired";
/// Gauge: streams in flight over every worker.
pub const STREAMS_ACTIVE: &str = "tenant_cache_key.streams.active";
