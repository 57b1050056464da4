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

use crate::envoy::{custom, Envoy, EnvoyBuilder};
use crate::process::Process;
use crate::ratelimit::{self, RateLimitService};
use crate::redis::RedisServer;
use crate::{template, tools, wait};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
pub use tonic_health::pb::health_check_response::ServingStatus;

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

/// The wasm filters: template placeholder and `dist/<module>.wasm`.
pub const WASM_MODULES: [(&str, &str); 3] = [
    ("JWT_AUTH_WASM", "jwt_auth"),
    ("TENANT_CACHE_KEY_WASM", "tenant_cache_key"),
    ("TRANSFORM_WASM", "transform"),
];

/// Every port of the demo, all on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub gateway: u16,
    pub gateway_tls: u16,
    pub admin: u16,
    pub orders_v1: u16,
    pub orders_v2: u16,
    pub users: u16,
    pub products: u16,
    pub events: u16,
    pub grpc: u16,
    pub idp: u16,
    pub rls_grpc: u16,
    pub rls_http: u16,
    pub redis: u16,
}

impl Ports {
    /// The documented defaults (docs/demo.md, docker-compose).
    pub const DEFAULT: Ports = Ports {
        gateway: 10000,
        gateway_tls: 10443,
        admin: 9901,
        orders_v1: 10001,
        orders_v2: 10002,
        users: 10003,
        products: 10004,
        events: 10005,
        grpc: 10006,
        idp: 10010,
        rls_grpc: 10081,
        rls_http: 10080,
        redis: 16379,
    };

    /// Every port chosen by the OS.
    pub const AUTO: Ports = Ports {
        gateway: 0,
        gateway_tls: 0,
        admin: 0,
        orders_v1: 0,
        orders_v2: 0,
        users: 0,
        products: 0,
        events: 0,
        grpc: 0,
        idp: 0,
        rls_grpc: 0,
        rls_http: 0,
        redis: 0,
    };

    /// Each port with the environment variable that overrides it.
    pub fn named(&mut self) -> [(&'static str, &mut u16); 13] {
        [
            ("DEMO_GATEWAY_PORT", &mut self.gateway),
            ("DEMO_GATEWAY_TLS_PORT", &mut self.gateway_tls),
            ("DEMO_ADMIN_PORT", &mut self.admin),
            ("DEMO_ORDERS_V1_PORT", &mut self.orders_v1),
            ("DEMO_ORDERS_V2_PORT", &mut self.orders_v2),
            ("DEMO_USERS_PORT", &mut self.users),
            ("DEMO_PRODUCTS_PORT", &mut self.products),
            ("DEMO_EVENTS_PORT", &mut self.events),
            ("DEMO_GRPC_PORT", &mut self.grpc),
            ("DEMO_IDP_PORT", &mut self.idp),
            ("DEMO_RLS_GRPC_PORT", &mut self.rls_grpc),
            ("DEMO_RLS_HTTP_PORT", &mut self.rls_http),
            ("DEMO_REDIS_PORT", &mut self.redis),
        ]
    }

    /// The defaults with every `DEMO_*_PORT` variable that is set applied.
    pub fn from_env() -> Result<Ports> {
        let mut ports = Ports::DEFAULT;
        for (var, port) in ports.named() {
            if let Ok(v) = std::env::var(var) {
                *port = v
                    .trim()
                    .parse()
                    .with_context(|| format!("{var}={v} is not a port"))?;
            }
        }
        Ok(ports)
    }

    /// The port of a [`ROLES`] entry.
    pub fn role(&self, role: &str) -> Result<u16> {
        Ok(match role {
            "orders-v1" => self.orders_v1,
            "orders-v2" => self.orders_v2,
            "users" => self.users,
            "products" => self.products,
            "events" => self.events,
            "grpc" => self.grpc,
            other => bail!("unknown demo role {other}"),
        })
    }

    fn role_mut(&mut self, role: &str) -> Result<&mut u16> {
        Ok(match role {
            "orders-v1" => &mut self.orders_v1,
            "orders-v2" => &mut self.orders_v2,
            "users" => &mut self.users,
            "products" => &mut self.products,
            "events" => &mut self.events,
            "grpc" => &mut self.grpc,
            other => bail!("unknown demo role {other}"),
        })
    }

    /// The gateway template's port placeholders and their values.
    pub fn template_vars(&self) -> [(&'static str, u16); 11] {
        [
            ("ADMIN_PORT", self.admin),
            ("GATEWAY_PORT", self.gateway),
            ("GATEWAY_TLS_PORT", self.gateway_tls),
            ("ORDERS_V1_PORT", self.orders_v1),
            ("ORDERS_V2_PORT", self.orders_v2),
            ("USERS_PORT", self.users),
            ("PRODUCTS_PORT", self.products),
            ("EVENTS_PORT", self.events),
            ("GRPC_PORT", self.grpc),
            ("JWKS_PORT", self.idp),
            ("RLS_PORT", self.rls_grpc),
        ]
    }
}

/// Where the gateway's files are (different on the host and in a container).
#[derive(Debug, Clone)]
pub struct GatewayPaths {
    /// Holds `cert.pem` and `key.pem`.
    pub cert_dir: PathBuf,
    /// A writable directory for Envoy's file-system HTTP cache.
    pub cache_dir: PathBuf,
    pub access_log: PathBuf,
    /// Holds the `<module>.wasm` files of [`WASM_MODULES`].
    pub wasm_dir: PathBuf,
}

/// A value for every placeholder of [`GATEWAY_TEMPLATE`]: what the demo passes and what
/// docker-compose's Envoy environment must provide.
pub fn gateway_vars(ports: &Ports, paths: &GatewayPaths) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = ports
        .template_vars()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = |p: &Path| p.display().to_string();
    for (k, v) in [
        ("CERT_DIR", path(&paths.cert_dir)),
        ("CACHE_DIR", path(&paths.cache_dir)),
        ("ACCESS_LOG", path(&paths.access_log)),
        ("ROUTE_TIMEOUT", ROUTE_TIMEOUT.to_string()),
        ("REPORT_TIMEOUT", REPORT_TIMEOUT.to_string()),
    ] {
        vars.insert(k.to_string(), v);
    }
    for (var, module) in WASM_MODULES {
        vars.insert(
            var.to_string(),
            path(&paths.wasm_dir.join(format!("{module}.wasm"))),
        );
    }
    vars
}

/// Fails before anything starts when the template's placeholders and [`gateway_vars`] differ.
fn check_placeholders(template_text: &str) -> Result<()> {
    let vars = gateway_vars(
        &Ports::DEFAULT,
        &GatewayPaths {
            cert_dir: PathBuf::new(),
            cache_dir: PathBuf::new(),
            access_log: PathBuf::new(),
            wasm_dir: PathBuf::new(),
        },
    );
    let used = template::placeholders(template_text);
    let unknown: Vec<&String> = used.iter().filter(|p| !vars.contains_key(*p)).collect();
    let unused: Vec<&String> = vars.keys().filter(|k| !used.contains(k)).collect();
    if !unknown.is_empty() || !unused.is_empty() {
        bail!(
            "placeholders without a demo value: {unknown:?}; \
             demo values without a placeholder: {unused:?}"
        );
    }
    Ok(())
}

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
        let rls_yaml = std::fs::read_to_string(tools::repo_root().join(RLS_CONFIG))
            .with_context(|| format!("reading {RLS_CONFIG}"))?;
        // The revocation API's bearer token: fresh for this run, in a file (never printed).
        let token_file = dir.path().join(ratelimit::REVOCATION_TOKEN_FILE);
        ratelimit::write_revocation_token(&token_file)?;
        let rls = RateLimitService::builder(&redis.url())
            .config("edge.yaml", &rls_yaml)
            .ports(ports.rls_grpc, ports.rls_http)
            .revocation_token_file(&token_file)
            .start()
            .await
            .context(
                "starting ratelimit-service (ports: DEMO_RLS_GRPC_PORT, DEMO_RLS_HTTP_PORT)",
            )?;
        rls.wait_ready(Duration::from_secs(15)).await?;
        ports.rls_grpc = rls.grpc_port();
        ports.rls_http = rls.http_port();

        let service_bin = opts.bin_dir.join("demo-service");
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
            let (child, bound) = start_child(role, &service_bin, &args, &logs).await?;
            *port = bound;
            services.push(child);
        }
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
        let cert_dir = dir.path().join("tls");
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir(&cert_dir)?;
        std::fs::create_dir(&cache_dir)?;
        tools::tls_certificate(&cert_dir, "gateway.localhost")?;
        let paths = GatewayPaths {
            cert_dir,
            cache_dir,
            access_log: dir.path().join("access.log"),
            wasm_dir: tools::repo_root().join("dist"),
        };
        for (_, module) in WASM_MODULES {
            tools::wasm(module)?;
        }
        let mut builder = EnvoyBuilder::new("gateway", &template).concurrency(1);
        for (k, v) in gateway_vars(&ports, &paths) {
            builder = builder.var(&k, v);
        }
        let envoy = builder.start().await.with_context(|| {
            format!(
                "starting Envoy on {} (ports: DEMO_GATEWAY_PORT, DEMO_GATEWAY_TLS_PORT, \
                 DEMO_ADMIN_PORT)",
                opts.template.display()
            )
        })?;
        ports.gateway = envoy.port("gateway");
        ports.gateway_tls = envoy.port("gateway_tls");
        ports.admin = envoy
            .admin_url("")
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("no port in {}", envoy.admin_url("")))?;
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

    /// What runs where and the curl commands of the walkthrough.
    pub fn banner(&self) -> String {
        let p = &self.ports;
        let gw = self.gateway();
        let idp = self.idp();
        let dir = self.dir.path().display();
        let mut rows = vec![
            (
                "gateway".to_string(),
                gw.clone(),
                format!("Envoy 1.40 on {} (HTTP/1.1, h2c)", self.template.display()),
            ),
            (
                "gateway-tls".into(),
                format!("https://127.0.0.1:{}", p.gateway_tls),
                "the same over TLS (h2, http/1.1)".into(),
            ),
            (
                "admin".into(),
                format!("http://127.0.0.1:{}", p.admin),
                "Envoy admin: /stats/prometheus, /clusters".into(),
            ),
            (
                "idp".into(),
                idp.clone(),
                "demo-idp: /.well-known/jwks.json, /token".into(),
            ),
        ];
        for role in ROLES {
            let scheme = if role == "grpc" { "h2c" } else { "http" };
            rows.push((
                role.into(),
                format!("{scheme}://127.0.0.1:{}", p.role(role).unwrap_or(0)),
                format!("demo-service --role {role}"),
            ));
        }
        rows.extend([
            (
                "ratelimit-grpc".into(),
                format!("127.0.0.1:{}", p.rls_grpc),
                format!("ratelimit-service, {RLS_CONFIG}"),
            ),
            (
                "ratelimit-http".into(),
                format!("http://127.0.0.1:{}", p.rls_http),
                "its /healthz, /ready, /metrics; /revocations (token below)".into(),
            ),
            (
                "ratelimit-token".into(),
                self.revocation_token_file().display().to_string(),
                "bearer token of /revocations (a file, made for this run)".into(),
            ),
            (
                "redis".into(),
                format!("127.0.0.1:{}", p.redis),
                "redis-server (rate-limit buckets)".into(),
            ),
        ]);
        let mut out = String::new();
        for (label, addr, what) in rows {
            // At least one space after the address: a long one (the token file) must stay a word.
            let _ = writeln!(out, "  {label:<16}{addr:<31} {what}");
        }
        let auth = "-H \"authorization: Bearer $TOKEN\"";
        format!(
            r#"
edgegate gateway demo: everything runs (logs in {dir}/logs)
{out}
Paste these into another shell:

1. Get a token from the demo IdP (RS256, 1 hour; alice of tenant acme, org 7):
     TOKEN=$(curl -s '{idp}/token?sub=alice&tenant=acme&org=7&scope=orders:read%20orders:write')

2. Without a token: 401 and a WWW-Authenticate challenge. With it: 200, and the upstream shows
   the identity headers jwt_auth set (x-user-id, x-tenant-id, x-org-id under "upstream_saw"):
     curl -si {gw}/api/orders/42
     curl -s {auth} {gw}/api/orders/42

3. A stripped field: the users service sends password_hash and internal, the gateway drops them:
     curl -s http://127.0.0.1:{users}/users/1
     curl -s {auth} {gw}/api/users/1

4. Exceed a limit: tenant tiny may make {tiny} requests a minute; the next gets 429 with Retry-After
   (-w %header{{...}} needs curl 7.84 or later):
     TINY=$(curl -s '{idp}/token?sub=bob&tenant=tiny')
     for i in 1 2 3 4; do curl -s -o /dev/null -H "authorization: Bearer $TINY" \
       -w '%{{http_code}} remaining=%header{{x-ratelimit-remaining}} retry-after=%header{{retry-after}}\n' \
       {gw}/api/orders/1; done

5. A per-tenant cached response (/api/catalog, served by products, 60 s): acme twice (the
   second is a hit: the same served_count, an age header), then globex (its own entry, a new
   served_count):
     OTHER=$(curl -s '{idp}/token?sub=carol&tenant=globex')
     curl -s {auth} -w ' age=%header{{age}}\n' {gw}/api/catalog/7
     curl -s {auth} -w ' age=%header{{age}}\n' {gw}/api/catalog/7
     curl -s -H "authorization: Bearer $OTHER" -w ' age=%header{{age}}\n' {gw}/api/catalog/7

6. The canary split: 95 % orders v1, 5 % v2 (a header pins v2):
     for i in $(seq 40); do curl -s {auth} {gw}/api/orders/1 | grep -o '"version":"v[12]"'; done | sort | uniq -c
     curl -s {auth} -H 'x-canary: true' {gw}/api/orders/1

7. WebSocket (/api/events, upgrade passed through, token required). curl 7.x has no WebSocket
   client, but the handshake shows the 101 (Ctrl-C or --max-time ends it):
     curl -si --http1.1 --max-time 2 {auth} -H 'connection: upgrade' -H 'upgrade: websocket' \
       -H 'sec-websocket-version: 13' -H 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==' {gw}/api/events
   With a WebSocket client, every text message comes back, e.g.:
     websocat -H "authorization: Bearer $TOKEN" ws://127.0.0.1:{gwp}/api/events

8. gRPC over HTTP/2 (grpc.health.v1.Health/Check on the gRPC upstream, token required). A raw
   unary call with curl: the reply is one frame, 00 00 00 00 02 08 01 (status 1 = SERVING):
     printf '\0\0\0\0\0' | curl -s --http2-prior-knowledge {auth} \
       -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \
       {gw}/grpc.health.v1.Health/Check | od -An -tx1
   Without the token: HTTP 200 with grpc-status: 16 (UNAUTHENTICATED), as gRPC clients expect:
     curl -s --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
       --data-binary '' -D - -o /dev/null {gw}/grpc.health.v1.Health/Check

9. TLS, and what Envoy saw:
     curl -s --cacert {dir}/tls/ca.pem {auth} https://127.0.0.1:{tls}/api/orders/1
     curl -s 'http://127.0.0.1:{admin}/stats?filter=wasmcustom'
     tail -n 3 {dir}/access.log

10. The rate-limit service's revocation API is for operators: 401 without its bearer token,
    the (empty) list with it:
     curl -s http://127.0.0.1:{rls_http}/revocations
     curl -s -H "authorization: Bearer $(cat {token_file})" http://127.0.0.1:{rls_http}/revocations

Ctrl-C stops every process.
"#,
            users = p.users,
            tiny = TINY_LIMIT,
            gwp = p.gateway,
            tls = p.gateway_tls,
            admin = p.admin,
            rls_http = p.rls_http,
            token_file = self.revocation_token_file().display(),
        )
    }

    /// The file holding the rate-limit service's revocation token (in the demo's directory).
    pub fn revocation_token_file(&self) -> PathBuf {
        self.dir.path().join(ratelimit::REVOCATION_TOKEN_FILE)
    }
}

/// The revocation token file a banner names (its `ratelimit-token` line).
pub fn banner_revocation_token_file(banner: &str) -> Option<PathBuf> {
    banner.lines().find_map(|line| {
        let rest = line.strip_prefix("  ratelimit-token")?;
        rest.split_whitespace().next().map(PathBuf::from)
    })
}

/// The `label address` lines of a banner (the test reads the ports from them).
pub fn parse_banner(banner: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for line in banner.lines() {
        let Some(rest) = line.strip_prefix("  ") else {
            continue;
        };
        if rest.starts_with(' ') {
            continue;
        }
        let mut words = rest.split_whitespace();
        if let (Some(label), Some(addr)) = (words.next(), words.next()) {
            if addr.contains("127.0.0.1:") {
                found.insert(label.to_string(), addr.to_string());
            }
        }
    }
    found
}

/// A loopback HTTP client (no proxy) with a 10 s timeout.
pub fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// A token from demo-idp (`GET /token`).
pub async fn token(
    http: &reqwest::Client,
    idp: &str,
    sub: &str,
    tenant: &str,
    scope: &str,
) -> Result<String> {
    let resp = http
        .get(format!("{idp}/token"))
        .query(&[("sub", sub), ("tenant", tenant), ("scope", scope)])
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("{idp}/token answered {}", resp.status());
    }
    Ok(resp.text().await?.trim().to_string())
}

/// `grpc.health.v1.Health/Check` (service "") through `base` with a bearer token.
pub async fn grpc_health(base: &str, token: &str) -> Result<ServingStatus> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let channel = tonic::transport::Endpoint::from_shared(base.to_string())?
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut client = HealthClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    });
    let reply = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(reply.into_inner().status())
}
