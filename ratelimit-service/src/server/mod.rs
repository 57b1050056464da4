//! The running service: gRPC (RateLimitService, QuotaLease, RateLimitQuotaService,
//! RevocationService, grpc.health.v1), HTTP (health, readiness, metrics, operator revocations) and config hot reload, all stopped by
//! one shutdown signal. Revocation writes on either port need the revocation token
//! ([`access`]).

mod access;
mod grpc;
mod http;
mod lease;
mod reload;
mod revocation;
mod rlqs;
mod spawned;

use crate::config::{read_sources, Config, ConfigError, LoadOptions};
use crate::limiter::{Limiter, LimiterOptions};
use crate::metrics::{LimitCounters, Metrics};
use crate::proto::lease::quota_lease_server::QuotaLeaseServer;
use crate::proto::revocation::revocation_service_server::RevocationServiceServer;
use crate::proto::rlqs::rate_limit_quota_service_server::RateLimitQuotaServiceServer;
use crate::proto::rls::rate_limit_service_server::RateLimitServiceServer;
use crate::revocation::memory::MemoryRevocations;
use crate::revocation::redis::RedisRevocations;
use crate::revocation::{AnyRevocationStore, DEFAULT_MAX_ENTRIES};
use crate::storage::memory::{MemoryStore, SystemClock};
use crate::storage::redis::RedisStore;
use crate::storage::{AnyStore, StoreError};
use arc_swap::ArcSwap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use access::{validate_token, RevocationAccess, TokenError, MIN_TOKEN_LEN};
pub use grpc::RateLimitGrpc;
pub use lease::QuotaLeaseGrpc;
pub use revocation::RevocationGrpc;
pub use rlqs::{RlqsGrpc, MIN_TTL as RLQS_MIN_TTL};
pub use spawned::Spawned;

/// Where buckets live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// Process memory: one instance only.
    Memory,
    /// A Redis URL (`redis://`, `rediss://`, `unix://`, `redis+cluster://a:1,b:2`).
    Redis { url: String },
}

/// Everything `run` needs besides its sockets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A YAML file or a directory of them.
    pub config_path: PathBuf,
    pub store: StoreSettings,
    /// Per-call Redis deadline; past it the call fails with UNAVAILABLE.
    pub redis_timeout: Duration,
    /// Most ShouldRateLimit decisions per Redis script call (1: no coalescing).
    pub redis_batch_limit: usize,
    /// Entries of the local over-limit cache; 0 disables it.
    pub local_cache_size: usize,
    pub ratelimit_headers: bool,
    /// How config files combine (`--merge-domain-config`).
    pub load_options: LoadOptions,
    /// How often the config is re-read for hot reload.
    pub reload_interval: Duration,
    /// Most live token revocations kept; a new one past this is refused.
    pub revocation_max_entries: usize,
    /// Who may write revocations (HTTP `POST /revocations`, gRPC `Revoke`) and read them over
    /// HTTP (`GET /revocations`); default: nobody. gRPC `ListRevocations` is open.
    pub revocation_access: RevocationAccess,
}

impl Settings {
    pub fn new(config_path: impl Into<PathBuf>, store: StoreSettings) -> Self {
        Settings {
            config_path: config_path.into(),
            store,
            redis_timeout: Duration::from_millis(20),
            redis_batch_limit: crate::storage::redis::MAX_BATCH,
            local_cache_size: 100_000,
            ratelimit_headers: false,
            load_options: LoadOptions::default(),
            reload_interval: Duration::from_secs(1),
            revocation_max_entries: DEFAULT_MAX_ENTRIES,
            revocation_access: RevocationAccess::disabled(),
        }
    }
}

/// Bound sockets (bind them yourself, e.g. on port 0, and read the addresses back).
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The config in force and its resolved metric counters, swapped together.
pub(crate) struct Loaded {
    pub config: Config,
    pub counters: Vec<LimitCounters>,
}

/// State shared by the gRPC, HTTP and reload tasks.
pub(crate) struct Shared {
    pub loaded: ArcSwap<Loaded>,
    pub limiter: Limiter<AnyStore>,
    pub revocations: AnyRevocationStore,
    /// Who may write (both transports) and read (HTTP) revocations.
    pub access: RevocationAccess,
    pub metrics: Metrics,
    /// How reloaded config files combine, as at startup.
    pub load_options: LoadOptions,
}

impl Shared {
    pub fn install(&self, config: Config) {
        let counters = self.metrics.bind(&config);
        self.loaded.store(Arc::new(Loaded { config, counters }));
        self.limiter.clear_cache();
    }
}

/// Serves until `shutdown` completes, then drains in-flight requests and returns.
pub async fn run(
    listeners: Listeners,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let sources = read_sources(&settings.config_path)?;
    let config = Config::from_sources_with(&sources, settings.load_options)?;
    let store = match &settings.store {
        StoreSettings::Memory => AnyStore::Memory(MemoryStore::new(SystemClock)),
        StoreSettings::Redis { url } => AnyStore::Redis(
            RedisStore::connect_with(url, settings.redis_timeout, settings.redis_batch_limit)
                .await?,
        ),
    };
    let revocations = match &settings.store {
        StoreSettings::Memory => AnyRevocationStore::Memory(MemoryRevocations::new(
            SystemClock,
            settings.revocation_max_entries,
        )),
        StoreSettings::Redis { url } => AnyRevocationStore::Redis(
            RedisRevocations::connect(url, settings.revocation_max_entries).await?,
        ),
    };
    let limiter = Limiter::new(
        store,
        settings.local_cache_size,
        LimiterOptions {
            ratelimit_headers: settings.ratelimit_headers,
        },
    );
    let metrics = Metrics::new();
    access::register_refusal_series(&metrics);
    let counters = metrics.bind(&config);
    let shared = Arc::new(Shared {
        loaded: ArcSwap::from_pointee(Loaded { config, counters }),
        limiter,
        revocations,
        access: settings.revocation_access.clone(),
        metrics,
        load_options: settings.load_options,
    });
    tracing::info!(
        config = %settings.config_path.display(),
        domains = shared.loaded.load().config.domains().count(),
        "configuration loaded"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let reload = tokio::spawn(reload::watch(
        Arc::clone(&shared),
        settings.config_path.clone(),
        settings.reload_interval,
        sources,
        stopped(stop_rx.clone()),
    ));

    log_revocation_access(&settings.revocation_access);
    let http = tokio::spawn(http::serve(
        listeners.http,
        Arc::clone(&shared),
        stopped(stop_rx.clone()),
    ));

    let grpc = serve_grpc(listeners.grpc, Arc::clone(&shared), stop_rx);
    let grpc_result = grpc.await;
    let http_result = http.await?;
    reload.abort();
    tracing::info!("stopped");
    grpc_result?;
    http_result.map_err(ServerError::Http)
}

/// The gRPC port: RateLimitService, QuotaLease, RateLimitQuotaService (RLQS),
/// RevocationService and grpc.health.v1. `stop` turning true ends open RLQS streams and then
/// the server.
async fn serve_grpc(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<RateLimitServiceServer<RateLimitGrpc>>()
        .await;
    health_reporter
        .set_serving::<QuotaLeaseServer<QuotaLeaseGrpc>>()
        .await;
    health_reporter
        .set_serving::<RateLimitQuotaServiceServer<RlqsGrpc>>()
        .await;
    health_reporter
        .set_serving::<RevocationServiceServer<RevocationGrpc>>()
        .await;
    // Nagle off on accepted sockets: small unary responses must not wait for delayed ACKs.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(RateLimitServiceServer::new(RateLimitGrpc::new(Arc::clone(
            &shared,
        ))))
        .add_service(QuotaLeaseServer::new(QuotaLeaseGrpc::new(Arc::clone(
            &shared,
        ))))
        .add_service(RateLimitQuotaServiceServer::new(RlqsGrpc::new(
            Arc::clone(&shared),
            stop.clone(),
        )))
        .add_service(
            RevocationServiceServer::new(RevocationGrpc::new(shared))
                .max_decoding_message_size(revocation::MAX_REVOCATION_MESSAGE),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
}

/// One startup line on who may use the revocation API (never the token).
fn log_revocation_access(access: &RevocationAccess) {
    let http_reads = if access.reads_public() {
        "public"
    } else if access.token_configured() {
        "token"
    } else {
        "disabled"
    };
    // ListRevocations: Envoy's jwt_auth filter polls it without credentials.
    let grpc_list = "open";
    if access.token_configured() {
        tracing::info!(
            writes = "token",
            http_reads,
            grpc_list,
            "revocation writes (HTTP POST /revocations, gRPC Revoke) need the bearer token"
        );
    } else {
        tracing::warn!(
            writes = "disabled",
            http_reads,
            grpc_list,
            "revocation writes (HTTP POST /revocations, gRPC Revoke) are refused (403, \
             PERMISSION_DENIED) because no token is configured (--revocation-token-file or \
             RLS_REVOCATION_TOKEN)"
        );
    }
}
