//! The plugin configuration as written (serde types, unknown fields refused everywhere).
//! [`crate::TenantPolicy::new`] validates it and compiles it into typed sources and routes.

use filter_core::route::UniqueMap;
use filter_core::RequestMatch;
use serde::Deserialize;

/// The header the resolved tenant is written to (and every client copy removed from).
pub const DEFAULT_TENANT_HEADER: &str = "x-tenant-id";
/// The API key header when an `api_key` source names none.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
/// Default upper bound on a tenant id's length.
pub const DEFAULT_TENANT_ID_MAX_LENGTH: usize = 64;
/// Hard upper bound on `tenant_id_max_length`.
pub const MAX_TENANT_ID_MAX_LENGTH: usize = 256;
/// Upper bound on `ttl` and `stale_while_revalidate`: one year, in seconds.
pub const MAX_CACHE_SECONDS: u64 = 365 * 24 * 3600;
/// The headers removed from the upstream request on a cache route when `identity_headers` is
/// not given: the user and the organisation jwt_auth forwards.
pub const DEFAULT_IDENTITY_HEADERS: [&str; 2] = ["x-user-id", "x-org-id"];
/// Written before a tenant id that an unauthenticated source (host, path, default) named, when
/// the policy also has a credential source (claim, api_key). `~` is outside the tenant id
/// alphabet, so `~acme` can never equal an id a credential proved.
pub const UNVERIFIED_PREFIX: &str = "~";
/// The header naming the consumer of a stream when `streams` names none: the user jwt_auth
/// sets from the verified token (after removing every client copy).
pub const DEFAULT_CONSUMER_HEADER: &str = "x-user-id";
/// Upper bound on `streams.per_tenant` (and so `per_consumer`): a tenant's open streams are one
/// shared-data value that every stream start and end rewrites.
pub const MAX_STREAMS_CAP: u32 = 1024;

/// The whole plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What this instance does: `request` (resolve the tenant), `response` (Vary and
    /// Cache-Control) or `both`. With Envoy's cache filter the two stages are two instances of
    /// this module at two places in the chain; without a cache one instance does both.
    #[serde(default)]
    pub stage: Stage,
    /// The header carrying the resolved tenant upstream, to the cache and to rate limits.
    #[serde(default)]
    pub tenant_header: Option<String>,
    /// The header carrying the tenant's plan (e.g. `x-tenant-plan`) for plan-tier rate limits.
    #[serde(default)]
    pub plan_header: Option<String>,
    /// Tried in order; the first that yields a valid tenant id wins.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Longest tenant id accepted from any source (1 to 256, default 64).
    #[serde(default)]
    pub tenant_id_max_length: Option<usize>,
    /// What happens when no source yields a tenant (default: reject with 403).
    #[serde(default)]
    pub unresolved: Option<UnresolvedConfig>,
    /// Request headers whose presence marks a request as authenticated (default
    /// `["authorization"]`). An authenticated request without a tenant bypasses shared caches
    /// (request stage: `Cache-Control: no-cache` added) and gets a private response (response
    /// stage: `Cache-Control: private`). Request stage: the answer to an authenticated request
    /// (or one whose tenant a credential source proved) leaves the gateway `private`, outside
    /// `public_routes`.
    #[serde(default)]
    pub credential_headers: Option<Vec<String>>,
    /// Request stage: routes whose answers are the same for everyone, exempt from making the
    /// answers to credentialed requests `Cache-Control: private` on their way to the client.
    #[serde(default)]
    pub public_routes: Option<Vec<PublicRouteConfig>>,
    /// Response stage: headers naming the user (default `["x-user-id", "x-org-id"]`), removed
    /// from the upstream request on every cache route: a cached answer is stored once per
    /// tenant, so the upstream must not be able to personalise it. The list replaces the
    /// default; it may not be empty while `cache_routes` are configured.
    #[serde(default)]
    pub identity_headers: Option<Vec<String>>,
    /// Add the tenant header to `Vary` on responses (default true).
    #[serde(default)]
    pub vary: Option<bool>,
    /// Per-route cache lifetimes for responses that set no `Cache-Control` themselves; the first
    /// matching route applies.
    #[serde(default)]
    pub cache_routes: Option<Vec<CacheRouteConfig>>,
    /// Request stage: caps on long-lived streams (WebSockets, gRPC streams) in flight, per
    /// consumer and per tenant, counted across every worker of the Envoy process.
    #[serde(default)]
    pub streams: Option<StreamsConfig>,
    /// Named route policies, chosen by the route Envoy matched (its `edgegate.tenant`
    /// metadata, or its name through `routes`). With them a route that names none is refused
    /// (403), and the matchers of `public_routes`, `cache_routes` and `streams.routes` (kept
    /// for configurations without route policies, deprecated) are refused.
    #[serde(default)]
    pub policies: Option<UniqueMap<RoutePolicyConfig>>,
    /// Route name -> policy name (or `none`), for routes that carry no metadata.
    #[serde(default)]
    pub routes: UniqueMap<String>,
}

/// What a route asks of this filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePolicyConfig {
    /// Request stage: the route's requests are long-lived streams, counted against `streams`.
    #[serde(default)]
    pub stream: bool,
    /// Request stage: the route's answers are the same for everyone, so answers to
    /// credentialed requests are not made `Cache-Control: private` (as `public_routes`).
    #[serde(default)]
    pub public: bool,
    /// Response stage: the lifetime shared caches get for the route's answers that set no
    /// `Cache-Control` themselves (as a `cache_routes` entry, without `match`).
    #[serde(default)]
    pub cache: Option<CacheRouteConfig>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    #[default]
    Both,
    Request,
    Response,
}

impl Stage {
    pub fn resolves(self) -> bool {
        matches!(self, Stage::Both | Stage::Request)
    }

    pub fn shapes_responses(self) -> bool {
        matches!(self, Stage::Both | Stage::Response)
    }
}

/// One tenant source, written as `{"<kind>": {...}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A header the JWT filter set from a verified claim (and removes from every request).
    Claim(ClaimSourceConfig),
    /// An API key header, looked up by its SHA-256 digest.
    ApiKey(ApiKeySourceConfig),
    /// The client certificate the connection verified (mTLS): its URI SAN or subject.
    ClientCert(ClientCertSourceConfig),
    /// The leftmost label of the host: `{tenant}<suffix>`.
    Host(HostSourceConfig),
    /// A path segment (0 is the first segment).
    Path(PathSourceConfig),
    /// A fixed tenant.
    Default(DefaultSourceConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSourceConfig {
    /// The header the JWT filter writes the tenant claim to (e.g. `x-jwt-tenant`).
    pub header: String,
    /// The header the JWT filter writes the plan claim to (e.g. `x-jwt-plan`).
    #[serde(default)]
    pub plan_header: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Option<RequestMatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySourceConfig {
    #[serde(default)]
    pub header: Option<String>,
    pub keys: Vec<ApiKeyConfig>,
    /// Remove the key header once it resolved a tenant (default true): the secret never reaches
    /// the upstream or the cache, and the request carries the tenant instead.
    #[serde(default)]
    pub remove: Option<bool>,
    #[serde(default, rename = "match")]
    pub matches: Option<RequestMatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// SHA-256 of the key, 64 hex digits (`printf %s "$KEY" | sha256sum`). Exactly one of
    /// `sha256` and `hashes`.
    #[serde(default)]
    pub sha256: Option<String>,
    /// When the key stops verifying (with `sha256`): RFC 3339 text or Unix seconds.
    #[serde(default)]
    pub not_after: Option<serde_json::Value>,
    /// Several keys of one tenant, each with its own optional `not_after`: a key is rotated by
    /// adding the new one here and giving the old one a `not_after`.
    #[serde(default)]
    pub hashes: Option<Vec<KeyHashConfig>>,
    pub tenant: String,
    #[serde(default)]
    pub plan: Option<String>,
}

/// One key of a tenant's `hashes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHashConfig {
    /// SHA-256 of the key, 64 hex digits.
    pub sha256: String,
    /// When the key stops verifying: RFC 3339 text (`2026-07-01T00:00:00Z`) or Unix seconds.
    #[serde(default)]
    pub not_after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertSourceConfig {
    /// Certificate identities and their tenants.
    pub identities: Vec<CertIdentityConfig>,
    #[serde(default, rename = "match")]
    pub matches: Option<RequestMatch>,
}

/// One partner certificate: exactly one of `uri` (the first URI SAN, e.g. a SPIFFE id
/// `spiffe://partners.example.com/acme`) and `subject` (the subject DN as Envoy prints it,
/// RFC 2253: `CN=acme-partner,O=Acme`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertIdentityConfig {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    pub tenant: String,
    #[serde(default)]
    pub plan: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSourceConfig {
    /// What follows the tenant label, e.g. `.api.example.com`.
    pub suffix: String,
    /// The plan of tenants found this way (anyone can send any host: give it the lowest plan).
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Option<RequestMatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSourceConfig {
    /// Index of the segment (`/t/acme/orders`: 0 is `t`, 1 is `acme`).
    pub segment: usize,
    /// The plan of tenants found this way (as unverified as the host: the lowest plan).
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Option<RequestMatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultSourceConfig {
    pub tenant: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Option<RequestMatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnresolvedConfig {
    pub action: UnresolvedAction,
    /// 400 or 403 (default 403) for `reject`.
    #[serde(default)]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnresolvedAction {
    /// Answer with a JSON error and never reach the upstream.
    Reject,
    /// Pass on without a tenant header.
    Anonymous,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicRouteConfig {
    /// Which requests the route covers (required: opting out is explicit).
    #[serde(rename = "match")]
    pub matches: RequestMatch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRouteConfig {
    /// Which requests the route covers; absent covers every request.
    #[serde(default, rename = "match")]
    pub matches: Option<RequestMatch>,
    /// `max-age` in seconds.
    pub ttl: u64,
    /// `stale-while-revalidate` in seconds.
    #[serde(default)]
    pub stale_while_revalidate: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsConfig {
    /// Deprecated matchers: which requests are long-lived streams (at least one route without
    /// `policies`; none with them, where a policy's `stream` says so).
    #[serde(default)]
    pub routes: Vec<StreamRouteConfig>,
    /// Streams one consumer (of one tenant) may hold open at once (1 to `per_tenant`).
    pub per_consumer: u32,
    /// Streams one tenant may hold open at once, all its consumers together (1 to 1024).
    pub per_tenant: u32,
    /// The header naming the consumer (default `x-user-id`). It must be one the gateway sets
    /// itself after removing client copies (jwt_auth does for `x-user-id`).
    #[serde(default)]
    pub consumer_header: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRouteConfig {
    /// Which requests the route covers (required).
    #[serde(rename = "match")]
    pub matches: RequestMatch,
}
