//! The rate limit service (`dist/ratelimit-service`) as a real process on OS-chosen ports.
//!
//! The service binds `127.0.0.1:0` for gRPC and HTTP and prints the bound addresses as one JSON
//! line on stdout; the fixture reads that line, then waits for `/healthz`. Its config files live
//! in a private directory (`--config <dir>`) that a test rewrites for hot reload. Stderr goes to
//! a log file printed when a test fails; the process gets SIGTERM (then SIGKILL) on drop.
//!
//! The HTTP revocation API (`/revocations`) needs a bearer token: by default the fixture
//! generates a random one per service into a file in its private directory and passes
//! `--revocation-token-file`; [`RateLimitService::revocation_token`] and
//! [`RateLimitService::revoke`] use it.

use crate::process::Process;
use crate::tools;
use crate::wait;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The file name of a generated revocation token (in the fixture's or the demo's directory).
pub const REVOCATION_TOKEN_FILE: &str = "revocation-token";

/// Where the service's revocation token comes from.
enum RevocationToken {
    /// A fresh random token in the fixture's directory.
    Generate,
    /// A file the caller wrote (e.g. with [`write_revocation_token`]).
    File(PathBuf),
    /// None: the service refuses `POST /revocations` (403).
    None,
}

/// Writes a fresh random token (32 bytes from /dev/urandom, hex) to `path`, readable by its
/// owner only, and returns it. Test and demo credentials are made at run time, never committed.
pub fn write_revocation_token(path: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

/// What to start: config files (name, YAML), the Redis URL and extra flags.
pub struct RateLimitServiceBuilder {
    configs: Vec<(String, String)>,
    redis_url: String,
    grpc_addr: String,
    http_addr: String,
    extra_args: Vec<String>,
    revocation_token: RevocationToken,
}

impl RateLimitServiceBuilder {
    pub fn new(redis_url: &str) -> Self {
        Self {
            configs: Vec::new(),
            redis_url: redis_url.to_string(),
            grpc_addr: "127.0.0.1:0".to_string(),
            http_addr: "127.0.0.1:0".to_string(),
            extra_args: Vec::new(),
            revocation_token: RevocationToken::Generate,
        }
    }

    /// The revocation token is in this file (instead of a generated one in the fixture's
    /// directory); it must outlive the service.
    pub fn revocation_token_file(mut self, path: &Path) -> Self {
        self.revocation_token = RevocationToken::File(path.to_path_buf());
        self
    }

    /// No revocation token: `POST /revocations` is refused (403).
    pub fn without_revocation_token(mut self) -> Self {
        self.revocation_token = RevocationToken::None;
        self
    }

    /// A file in the config directory (e.g. `("edge.yaml", yaml)`).
    pub fn config(mut self, file: &str, yaml: &str) -> Self {
        self.configs.push((file.to_string(), yaml.to_string()));
        self
    }

    /// Fixed loopback ports for gRPC and HTTP instead of OS-chosen ones (0 keeps that choice).
    pub fn ports(mut self, grpc: u16, http: u16) -> Self {
        self.grpc_addr = format!("127.0.0.1:{grpc}");
        self.http_addr = format!("127.0.0.1:{http}");
        self
    }

    /// An extra command-line flag (e.g. `--reload-interval`, `100ms`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Extra command-line flags, in order.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Starts the service, learns its ports and waits until `/healthz` answers.
    pub async fn start(self) -> Result<RateLimitService> {
        let bin = tools::dist_bin("ratelimit-service")?;
        let dir = tempfile::Builder::new().prefix("rls-test-").tempdir()?;
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir)?;
        for (file, yaml) in &self.configs {
            write_atomically(&config_dir, file, yaml)?;
        }
        let log_path = dir.path().join("ratelimit-service.log");
        let stderr = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(&bin);
        // Only what this builder says: none of the runner's revocation settings.
        for var in [
            "RLS_REVOCATION_TOKEN",
            "RLS_REVOCATION_TOKEN_FILE",
            "RLS_REVOCATION_READ_PUBLIC",
        ] {
            cmd.env_remove(var);
        }
        let token_file = match self.revocation_token {
            RevocationToken::Generate => {
                let path = dir.path().join(REVOCATION_TOKEN_FILE);
                write_revocation_token(&path)?;
                Some(path)
            }
            RevocationToken::File(path) => Some(path),
            RevocationToken::None => None,
        };
        let revocation_token = match &token_file {
            Some(path) => {
                cmd.arg("--revocation-token-file").arg(path);
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(text.trim().to_string())
            }
            None => None,
        };
        cmd.args([
            "--grpc-addr",
            &self.grpc_addr,
            "--http-addr",
            &self.http_addr,
        ])
        .arg("--config")
        .arg(&config_dir)
        .args(["--redis-url", &self.redis_url, "--log-format", "text"])
        .args(&self.extra_args)
        .stdin(Stdio::null())
        .stderr(stderr);
        let (process, line) =
            Process::spawn_announcing("ratelimit-service", &mut cmd, vec![log_path], START_TIMEOUT)
                .await?;
        let mut service = RateLimitService {
            process,
            _dir: dir,
            config_dir,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: reqwest::Client::builder().no_proxy().build()?,
            revocation_token,
        };
        let addrs: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("the first stdout line is not JSON: {line:?}"))?;
        let addr = |field: &str| -> Result<SocketAddr> {
            addrs[field]
                .as_str()
                .ok_or_else(|| anyhow!("no {field} in {line:?}"))?
                .parse()
                .with_context(|| format!("{field} in {line:?}"))
        };
        service.grpc_addr = addr("grpc_addr")?;
        service.http_addr = addr("http_addr")?;
        service.wait_healthy().await?;
        Ok(service)
    }
}

fn write_atomically(dir: &Path, file: &str, yaml: &str) -> Result<()> {
    // The service skips dot files, so it never reads the half-written temporary file.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, yaml)?;
    std::fs::rename(&tmp, dir.join(file))?;
    Ok(())
}

/// A running rate limit service; dropping it stops the process.
pub struct RateLimitService {
    // Declared before `dir`: the process (and its log printing) goes before its files do.
    process: Process,
    /// Holds the config directory and the log file for as long as the service runs.
    _dir: tempfile::TempDir,
    config_dir: PathBuf,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    http: reqwest::Client,
    revocation_token: Option<String>,
}

impl RateLimitService {
    /// Starts the service with one config file, `config.yaml`.
    pub async fn start(redis_url: &str, yaml: &str, extra_args: &[&str]) -> Result<Self> {
        let mut builder = RateLimitServiceBuilder::new(redis_url).config("config.yaml", yaml);
        for arg in extra_args {
            builder = builder.arg(arg);
        }
        builder.start().await
    }

    pub fn builder(redis_url: &str) -> RateLimitServiceBuilder {
        RateLimitServiceBuilder::new(redis_url)
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                bail!(
                    "ratelimit-service exited during startup with {status}; log:\n{}",
                    self.log()
                );
            }
            if let Ok(resp) = self.http.get(self.http_url("/healthz")).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "ratelimit-service /healthz not answering after {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `/ready` says 200 (config loaded and the store answers PING).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        wait::until(
            "ratelimit-service /ready to answer 200",
            timeout,
            || async {
                let resp = self.http.get(self.http_url("/ready")).send().await?;
                Ok(resp.status().is_success().then_some(()))
            },
        )
        .await
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        self.process.try_exit()
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc_addr.port()
    }

    pub fn http_port(&self) -> u16 {
        self.http_addr.port()
    }

    /// `http://127.0.0.1:<http port><path>` (`/healthz`, `/ready`, `/metrics`, and
    /// `/revocations` with [`Self::revocation_token`]).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http_addr, path)
    }

    /// The bearer token of `/revocations` (`None` after
    /// [`RateLimitServiceBuilder::without_revocation_token`]).
    pub fn revocation_token(&self) -> Option<&str> {
        self.revocation_token.as_deref()
    }

    /// `POST /revocations` with the token; returns the store version.
    pub async fn revoke(&self, issuer: &str, jti: &str, expires_at: u64) -> Result<u64> {
        let token = self
            .revocation_token()
            .ok_or_else(|| anyhow!("this service has no revocation token"))?;
        let resp = self
            .http
            .post(self.http_url("/revocations"))
            .bearer_auth(token)
            .json(&serde_json::json!({"issuer": issuer, "jti": jti, "expires_at": expires_at}))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            bail!("POST /revocations answered {status}: {body}");
        }
        body["version"]
            .as_u64()
            .ok_or_else(|| anyhow!("POST /revocations answered {body} without a version"))
    }

    /// Writes (or replaces) a file in the config directory, atomically (write + rename), for hot
    /// reload. The service polls the directory every `--reload-interval`.
    pub fn write_config(&self, file: &str, yaml: &str) -> Result<()> {
        write_atomically(&self.config_dir, file, yaml)
    }

    /// Removes a file from the config directory.
    pub fn remove_config(&self, file: &str) -> Result<()> {
        Ok(std::fs::remove_file(self.config_dir.join(file))?)
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The Prometheus text from `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        let resp = self.http.get(self.http_url("/metrics")).send().await?;
        if !resp.status().is_success() {
            bail!("/metrics answered {}", resp.status());
        }
        Ok(resp.text().await?)
    }

    /// The sum of a metric's samples whose labels include every `name="value"` in `labels`
    /// (exact sample name, e.g. `ratelimit_hits_total`); `None` when no sample matches.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<Option<f64>> {
        Ok(metric_sum(&self.metrics().await?, name, labels))
    }

    /// Waits until [`Self::metric`] reaches at least `min`.
    pub async fn wait_metric_at_least(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        min: f64,
    ) -> Result<f64> {
        wait::until(
            &format!("ratelimit-service metric {name}{labels:?} >= {min}"),
            Duration::from_secs(10),
            || async { Ok(self.metric(name, labels).await?.filter(|v| *v >= min)) },
        )
        .await
    }

    /// Everything the service has logged so far (stderr).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits until the log contains `needle`, returning the whole log.
    pub async fn wait_log(&self, needle: &str) -> Result<String> {
        self.process.wait_log(needle).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.process.terminate(within)
    }
}

/// Sums the samples of `name` in Prometheus text whose label set contains all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(rest) = rest.strip_prefix('{') {
            match rest.rsplit_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if let Some(v) = rest.strip_prefix(' ') {
            ("", v)
        } else {
            continue; // a longer metric name sharing the prefix
        };
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if !matches {
            continue;
        }
        if let Ok(v) = value.split_whitespace().next().unwrap_or("").parse::<f64>() {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// The limit in an `x-ratelimit-limit` answer header (`3, 3;w=3600` -> 3).
pub fn limit_of(resp: &reqwest::Response) -> Option<u64> {
    let value = resp.headers().get("x-ratelimit-limit")?.to_str().ok()?;
    value.split([',', ';']).next()?.trim().parse().ok()
}

/// Redis, the service on `yaml` (ready) and an upstream answering `200 upstream`: what stands
/// behind the rate-limited Envoy of the leased-quota and RLQS tests.
pub async fn stack(
    yaml: &str,
) -> Result<(
    crate::redis::RedisServer,
    RateLimitService,
    crate::upstream::Upstream,
)> {
    use crate::upstream::{Reply, Upstream};
    let redis = crate::redis::RedisServer::start()?;
    let rls = RateLimitService::start(&redis.url(), yaml, &[]).await?;
    rls.wait_ready(Duration::from_secs(10)).await?;
    let up = Upstream::start(|_| Reply::text(200, "upstream")).await?;
    Ok((redis, rls, up))
}

/// `GET /orders` on `envoy`'s `main` listener as `tenant` (the `x-tenant` header the leased and
/// RLQS templates' limits key on).
pub async fn get_as_tenant(envoy: &crate::envoy::Envoy, tenant: &str) -> Result<reqwest::Response> {
    let response = crate::envoy::client()
        .get(envoy.url("main", "/orders"))
        .header("x-tenant", tenant)
        .send()
        .await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::{metric_sum, write_revocation_token, RateLimitService};

    /// The fixture's generated token opens `/revocations` for [`RateLimitService::revoke`] (the
    /// real `dist/ratelimit-service`, memory store); without it the same POST is 401, and a
    /// service started without a token refuses it (403).
    #[tokio::test]
    async fn revoke_uses_the_generated_token() {
        let yaml = "domain: edge\n";
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let rls = RateLimitService::builder("redis://127.0.0.1:1")
            .config("edge.yaml", yaml)
            .args(&["--store", "memory"])
            .start()
            .await
            .unwrap();
        assert_eq!(rls.revocation_token().unwrap().len(), 64);
        assert!(rls.revoke("https://idp", "j1", until).await.unwrap() > 0);
        let anonymous = reqwest::Client::builder().no_proxy().build().unwrap();
        let resp = anonymous
            .post(rls.http_url("/revocations"))
            .json(&serde_json::json!({"issuer": "https://idp", "jti": "j2", "expires_at": until}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);

        let closed = RateLimitService::builder("redis://127.0.0.1:1")
            .config("edge.yaml", yaml)
            .args(&["--store", "memory"])
            .without_revocation_token()
            .start()
            .await
            .unwrap();
        assert!(closed.revocation_token().is_none());
        let resp = anonymous
            .post(closed.http_url("/revocations"))
            .json(&serde_json::json!({"issuer": "https://idp", "jti": "j3", "expires_at": until}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
    }

    #[test]
    fn revocation_tokens_are_random_hex_for_the_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let token = write_revocation_token(&a).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|c| c.is_ascii_hexdigit()), "{token}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), format!("{token}\n"));
        let mode = std::fs::metadata(&a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(write_revocation_token(&b).unwrap(), token);
        assert!(write_revocation_token(&a).is_err(), "never overwrites");
    }

    #[test]
    fn sums_matching_samples() {
        let text = "# HELP x\n\
            ratelimit_hits_total{domain=\"edge\",descriptor=\"a\"} 2\n\
            ratelimit_hits_total{domain=\"edge\",descriptor=\"b\"} 3\n\
            ratelimit_hits_total_extra{domain=\"edge\"} 100\n\
            ratelimit_other 7\n";
        assert_eq!(metric_sum(text, "ratelimit_hits_total", &[]), Some(5.0));
        assert_eq!(
            metric_sum(text, "ratelimit_hits_total", &[("descriptor", "b")]),
            Some(3.0)
        );
        assert_eq!(
            metric_sum(text, "ratelimit_hits_total", &[("domain", "x")]),
            None
        );
        assert_eq!(metric_sum(text, "ratelimit_other", &[]), Some(7.0));
    }
}
