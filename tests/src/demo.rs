//! `make demo`: the whole gateway as plain local processes on loopback, and the banner that tells
//! a user what runs where and which curl commands show each feature.
//!
//! [`Demo::start`] starts Redis, `dist/ratelimit-service` (with [`RLS_CONFIG`]), one
//! `demo-service` process per role, `demo-idp`, and Envoy on [`GATEWAY_TEMPLATE`] with the
//! filters from `dist/`; it returns once every route answers through the gateway. Dropping the
//! [`Demo`] stops every process (Envoy first). The ports are [`Ports::DEFAULT`] (each
//! overridable by its `DEMO_*_PORT` variable) or, in auto mode, all chosen by the OS (the test).
//! `envoy/docker-compose.yaml` runs the same topology on the same default ports, and
//! `tests/tests/deploy_compose.rs` holds it to these constants.
//!
//! [`Ports`] and the template's values ([`gateway_vars`]) are in `ports` and `vars`; starting
//! the processes ([`Options`], [`Demo::start`]) in `run`; the banner in `banner`; the clients
//! the demo and its test use in `clients`; the walkthrough's core steps, checked against the
//! processes or the compose file's containers, in `walkthrough`.

use crate::envoy::Envoy;
use crate::process::Process;
use crate::ratelimit::{self, RateLimitService};
use crate::redis::RedisServer;
use std::path::PathBuf;
pub use tonic_health::pb::health_check_response::ServingStatus;

mod banner;
mod clients;
mod ports;
mod run;
mod vars;
mod walkthrough;

pub use banner::{banner_revocation_token_file, parse_banner};
pub use clients::{client, grpc_health, token};
pub use ports::Ports;
pub use run::Options;
pub use vars::{gateway_vars, GatewayPaths};
pub use walkthrough::{core_steps, Endpoints};

/// The issuer and audience the gateway's jwt_auth provider accepts and demo-idp issues.
pub const ISSUER: &str = "https://idp.edgegate.localhost";
pub const AUDIENCE: &str = "api";
/// The gateway refuses tokens that live longer (`max_lifetime: 3600s`).
pub const MAX_TOKEN_TTL_SECS: u64 = 3600;

/// The Envoy config template the demo, the tests and docker-compose all use.
pub const GATEWAY_TEMPLATE: &str = "envoy/gateway.yaml";
/// The rate-limit service's config (domain `edge`), also mounted by docker-compose.
pub const RLS_CONFIG: &str = "ratelimit-service/examples/edge.yaml";
/// Route timeouts the demo gives the template (the tests shorten them).
pub const ROUTE_TIMEOUT: &str = "8s";
pub const REPORT_TIMEOUT: &str = "30s";
/// Tenant `tiny`'s limit in [`RLS_CONFIG`]: requests per minute.
pub const TINY_LIMIT: u32 = 3;

/// The demo upstream roles, one `demo-service --role <role>` process each.
pub const ROLES: [&str; 6] = [
    "orders-v1",
    "orders-v2",
    "users",
    "products",
    "events",
    "grpc",
];

/// The built files the gateway loads: template placeholder and the file's name in `dist/` (the
/// wasm filters, and the inventory service's descriptor set for the gRPC-JSON transcoder).
pub const DIST_FILES: [(&str, &str); 6] = [
    ("JWT_AUTH_WASM", "jwt_auth.wasm"),
    ("TENANT_CACHE_KEY_WASM", "tenant_cache_key.wasm"),
    ("TRANSFORM_WASM", "transform.wasm"),
    ("RATELIMIT_WASM", "ratelimit.wasm"),
    ("AGGREGATE_WASM", "aggregate.wasm"),
    ("INVENTORY_DESCRIPTOR", "inventory.pb"),
];

/// The running demo. Fields drop in order: Envoy first, then the processes it calls.
pub struct Demo {
    envoy: Envoy,
    _services: Vec<Process>,
    _idp: Process,
    _rls: RateLimitService,
    _redis: RedisServer,
    dir: tempfile::TempDir,
    ports: Ports,
    template: PathBuf,
}

impl Demo {
    /// The ports in use (the OS's choices in auto mode).
    pub fn ports(&self) -> Ports {
        self.ports
    }

    fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.gateway)
    }

    fn idp(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.idp)
    }

    /// The file holding the rate-limit service's revocation token (in the demo's directory).
    pub fn revocation_token_file(&self) -> PathBuf {
        self.dir.path().join(ratelimit::REVOCATION_TOKEN_FILE)
    }
}
