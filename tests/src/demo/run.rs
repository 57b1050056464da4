//! Starting the demo: Redis, ratelimit-service, the demo upstreams and IdP, then Envoy, and
//! waiting until every route answers.

use super::clients::{client, grpc_health, token};
use super::vars::check_placeholders;
use super::{
    gateway_vars, Demo, GatewayPaths, Ports, ServingStatus, DIST_FILES, GATEWAY_TEMPLATE,
    RLS_CONFIG, ROLES,
};
use crate::envoy::{custom, Envoy, EnvoyBuilder};
use crate::process::Process;
use crate::ratelimit::{self, RateLimitService};
use crate::redis::RedisServer;
use crate::{tools, wait};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub ports: Ports,
    /// The Envoy config template (default: [`GATEWAY_TEMPLATE`] in the repository).
    pub template: PathBuf,
    /// Where `demo-service` and `demo-idp` are (default: next to the running executable).
    pub bin_dir: PathBuf,
}

impl Options {
    /// Ports from `DEMO_*_PORT` (or all from the OS when `auto`), the template from
    /// `$DEMO_ENVOY_CONFIG`, the binaries from `$DEMO_BIN_DIR`.
    pub fn from_env(auto: bool) -> Result<Options> {
        let ports = if auto {
            Ports::AUTO
        } else {
            Ports::from_env()?
        };
        let template = std::env::var_os("DEMO_ENVOY_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| tools::repo_root().join(GATEWAY_TEMPLATE));
        let bin_dir = match std::env::var_os("DEMO_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::current_exe()
                .context("locating the running executable")?
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| anyhow!("the executable has no directory"))?,
        };
        Ok(Options {
            ports,
            template,
            bin_dir,
        })
    }
}

/// Starts a demo binary (`demo-service`, `demo-idp`) and reads the port from its
/// `listening 127.0.0.1:N` line.
async fn start_child(
    name: &str,
    bin: &Path,
    args: &[String],
    logs: &Path,
) -> Result<(Process, u16)> {
    if !bin.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p gateway-tests --bins` (`make demo` does)",
            bin.display()
        );
    }
    let log = logs.join(format!("{name}.log"));
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let (process, line) =
        Process::spawn_announcing(name, &mut cmd, vec![log], Duration::from_secs(30)).await?;
    let port = line
        .strip_prefix("listening 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("{name} announced {line:?}, not `listening 127.0.0.1:N`"))?;
    Ok((process, port))
}

impl Demo {
    /// Starts everything and waits until every route answers through the gateway. `progress`
    /// hears what is being started.
    pub async fn start(opts: &Options, progress: impl Fn(&str)) -> Result<Demo> {
        let mut ports = opts.ports;
        let template = std::fs::read_to_string(&opts.template)
            .with_context(|| format!("reading {}", opts.template.display()))?;
        check_placeholders(&template)
            .with_context(|| format!("{} does not fit the demo", opts.template.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("edgegate-demo-")
            .tempdir()?;
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs)?;

        progress(&format!("redis-server on 127.0.0.1:{}", ports.redis));
        let redis = RedisServer::start_on(ports.redis)
            .with_context(|| format!("starting Redis (port {}: DEMO_REDIS_PORT)", ports.redis))?;
        ports.redis = redis.port();

        progress(&format!("ratelimit-service with {RLS_CONFIG}"));
        let rls = start_rls(&redis, dir.path(), &mut ports).await?;
        let services = start_services(&opts.bin_dir, &logs, &mut ports, &progress).await?;
        progress("demo-idp (generating its RSA key)");
        let (idp, idp_port) = start_child(
            "demo-idp",
            &opts.bin_dir.join("demo-idp"),
            &["--port".to_string(), ports.idp.to_string()],
            &logs,
        )
        .await?;
        ports.idp = idp_port;

        progress("Envoy with the gateway config");
        let envoy = start_envoy(&template, &opts.template, dir.path(), &mut ports).await?;
        let demo = Demo {
            envoy,
            _services: services,
            _idp: idp,
            _rls: rls,
            _redis: redis,
            dir,
            ports,
            template: opts.template.clone(),
        };
        progress("waiting until every route answers");
        demo.wait_routes().await?;
        Ok(demo)
    }

    /// jwt_auth has its keys and every cluster passed its first health check: each route
    /// answers 200 (tenant `probe`, so no limit a user tries moves).
    async fn wait_routes(&self) -> Result<()> {
        self.envoy
            .wait_stat_at_least(&custom(jwt_auth::metrics::JWKS_FETCH_SUCCESS), 1)
            .await?;
        let http = client()?;
        let token = token(&http, &self.idp(), "probe", "probe", "orders:read").await?;
        for route in [
            "/api/v1/orders/1",
            "/api/v2/orders/1",
            "/api/users/1",
            "/api/products/probe",
            "/api/events",
        ] {
            let url = format!("{}{route}", self.gateway());
            let (http, url, token) = (&http, &url, &token);
            wait::until(
                &format!("{route} to answer 200 through the gateway"),
                Duration::from_secs(20),
                || async move {
                    let resp = http.get(url).bearer_auth(token).send().await?;
                    Ok(resp.status().is_success().then_some(()))
                },
            )
            .await?;
        }
        let gateway = self.gateway();
        let (gateway, token) = (&gateway, &token);
        wait::until(
            "grpc.health.v1.Health/Check to answer through the gateway",
            Duration::from_secs(20),
            || async move {
                let status = grpc_health(gateway, token).await?;
                Ok((status == ServingStatus::Serving).then_some(()))
            },
        )
        .await?;
        Ok(())
    }
}

/// ratelimit-service with [`RLS_CONFIG`] on `redis`, and a fresh revocation token in `dir`.
async fn start_rls(redis: &RedisServer, dir: &Path, ports: &mut Ports) -> Result<RateLimitService> {
    let rls_yaml = std::fs::read_to_string(tools::repo_root().join(RLS_CONFIG))
        .with_context(|| format!("reading {RLS_CONFIG}"))?;
    // The revocation API's bearer token: fresh for this run, in a file (never printed).
    let token_file = dir.join(ratelimit::REVOCATION_TOKEN_FILE);
    ratelimit::write_revocation_token(&token_file)?;
    let rls = RateLimitService::builder(&redis.url())
        .config("edge.yaml", &rls_yaml)
        .ports(ports.rls_grpc, ports.rls_http)
        .revocation_token_file(&token_file)
        .start()
        .await
        .context("starting ratelimit-service (ports: DEMO_RLS_GRPC_PORT, DEMO_RLS_HTTP_PORT)")?;
    rls.wait_ready(Duration::from_secs(15)).await?;
    ports.rls_grpc = rls.grpc_port();
    ports.rls_http = rls.http_port();
    Ok(rls)
}

/// One `demo-service` per [`ROLES`] entry.
async fn start_services(
    bin_dir: &Path,
    logs: &Path,
    ports: &mut Ports,
    progress: &impl Fn(&str),
) -> Result<Vec<Process>> {
    let service_bin = bin_dir.join("demo-service");
    let mut services = Vec::new();
    for role in ROLES {
        progress(&format!("demo-service --role {role}"));
        let port = ports.role_mut(role)?;
        let args = [
            "--role".to_string(),
            role.to_string(),
            "--port".to_string(),
            port.to_string(),
        ];
        let (child, bound) = start_child(role, &service_bin, &args, logs).await?;
        *port = bound;
        services.push(child);
    }
    Ok(services)
}

/// Envoy on `template` (read from `template_path`) with the filters from `dist/`, its TLS
/// certificate, cache and access log in `dir`.
async fn start_envoy(
    template: &str,
    template_path: &Path,
    dir: &Path,
    ports: &mut Ports,
) -> Result<Envoy> {
    let cert_dir = dir.join("tls");
    let cache_dir = dir.join("cache");
    std::fs::create_dir(&cert_dir)?;
    std::fs::create_dir(&cache_dir)?;
    tools::tls_certificate(&cert_dir, "gateway.localhost")?;
    let paths = GatewayPaths {
        cert_dir,
        cache_dir,
        access_log: dir.join("access.log"),
        dist_dir: tools::repo_root().join("dist"),
    };
    for (_, file) in DIST_FILES {
        tools::dist_bin(file)?;
    }
    let mut builder = EnvoyBuilder::new("gateway", template).concurrency(1);
    for (k, v) in gateway_vars(ports, &paths) {
        builder = builder.var(&k, v);
    }
    let envoy = builder.start().await.with_context(|| {
        format!(
            "starting Envoy on {} (ports: DEMO_GATEWAY_PORT, DEMO_GATEWAY_TLS_PORT, \
             DEMO_GATEWAY_MTLS_PORT, DEMO_ADMIN_PORT)",
            template_path.display()
        )
    })?;
    ports.gateway = envoy.port("gateway");
    ports.gateway_tls = envoy.port("gateway_tls");
    ports.gateway_mtls = envoy.port("gateway_mtls");
    ports.admin = envoy
        .admin_url("")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("no port in {}", envoy.admin_url("")))?;
    Ok(envoy)
}
