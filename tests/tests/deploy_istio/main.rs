//! `envoy/istio/`: the Istio manifests parse as Kubernetes objects, and what they configure is
//! accepted by the component that reads it — each WasmPlugin's `pluginConfig` by its filter's own
//! parser (the function the module calls in `on_configure`), the rate-limit ConfigMap by
//! ratelimit-service's loader — and the names that tie them together agree: the JWKS and
//! rate-limit clusters with the ServiceEntry and Service they come from, the route names with the
//! VirtualService, the descriptors with the rate-limit config, and the configs with
//! `envoy/gateway.yaml`, which they mirror.
//!
//! `oci` publishes the modules to a real registry (`make oci`) and runs the route table on the
//! modules pulled back from the pinned urls.
//!
//! One test binary, one module per concern; loading the manifests and the reference gateway,
//! and the look-ups several modules use, are in `support`.

mod manifests;
mod oci;
mod plugins;
mod ratelimit;
mod routes;
mod support;

/// What every module of this binary uses.
mod prelude {
    pub use gateway_tests::{template, tools};
    pub use jwt_auth::config::{FilterConfig, KeySource};
    pub use ratelimit_service::config::Config as RateLimitConfig;
    pub use serde::Deserialize;
    pub use serde_json::{json, Value};
    pub use std::collections::{BTreeMap, BTreeSet};
    pub use std::path::PathBuf;
    pub use tenant_cache_key::{Stage, TenantPolicy};
    pub use transform::{ResponseHeadersMode, Transformer};
}
