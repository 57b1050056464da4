//! A real Envoy process: rendered from a template, validated, started on OS-chosen ports.
//!
//! Templates bind the admin interface and every listener to `127.0.0.1` port 0; the harness
//! learns the admin address from `--admin-address-path` and the listener ports from the admin
//! `/listeners` endpoint, so parallel tests never race for ports. Hot restart is disabled, so
//! concurrent Envoys share no shared-memory region.

use crate::process::Process;
use crate::template;
use crate::tools;
use crate::wait;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct EnvoyBuilder {
    name: String,
    template: String,
    vars: BTreeMap<String, String>,
    concurrency: usize,
    extra_args: Vec<String>,
}

/// Runs `envoy --mode validate` on a config file; the error carries Envoy's own words.
pub fn validate_file(path: &Path) -> Result<()> {
    let out = Command::new(tools::envoy_bin()?)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(path)
        .output()
        .context("running envoy --mode validate")?;
    if !out.status.success() {
        bail!(
            "envoy --mode validate rejected {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl EnvoyBuilder {
    /// `name` labels logs; `template` is the YAML text with `{{ NAME }}` placeholders.
    pub fn new(name: &str, template: &str) -> Self {
        Self {
            name: name.to_string(),
            template: template.to_string(),
            vars: BTreeMap::new(),
            concurrency: 1,
            extra_args: Vec::new(),
        }
    }

    /// Loads a template from a path relative to the repository root (`envoy/...`).
    pub fn from_repo_file(name: &str, rel: &str) -> Result<Self> {
        let path = tools::repo_root().join(rel);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading template {}", path.display()))?;
        Ok(Self::new(name, &text))
    }

    pub fn var(mut self, name: &str, value: impl ToString) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    /// Sets a placeholder to a YAML string scalar holding `value` exactly (e.g. a JSON plugin
    /// configuration).
    pub fn string_var(self, name: &str, value: &str) -> Self {
        let quoted = template::yaml_string(value);
        self.var(name, quoted)
    }

    /// Sets a placeholder to the path of `dist/<module>.wasm`.
    pub fn wasm(self, name: &str, module: &str) -> Result<Self> {
        let path = tools::wasm(module)?;
        Ok(self.var(name, path.display()))
    }

    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    pub fn render(&self) -> Result<String> {
        template::render(&self.template, &self.vars)
            .with_context(|| format!("rendering the {} Envoy template", self.name))
    }

    /// Renders, validates with `envoy --mode validate`, starts Envoy and waits until `/ready`.
    pub async fn start(self) -> Result<Envoy> {
        let dir = tempfile::Builder::new().prefix("envoy-test-").tempdir()?;
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, self.render()?)?;
        validate_file(&config)?;
        let mut envoy = self.spawn(dir, config)?;
        envoy.wait_ready().await?;
        envoy.listeners = envoy.read_listeners().await?;
        Ok(envoy)
    }

    /// Starts an Envoy that is expected to refuse its configuration at startup: returns its exit
    /// status and log once it exits (validate mode is skipped: the refusal we want to see
    /// happens when the filters are created).
    pub async fn start_expecting_exit(self, within: Duration) -> Result<(ExitStatus, String)> {
        let dir = tempfile::Builder::new().prefix("envoy-test-").tempdir()?;
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, self.render()?)?;
        let mut envoy = self.spawn(dir, config)?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = envoy.process.try_exit() {
                return Ok((status, envoy.log()));
            }
            if Instant::now() > deadline {
                bail!(
                    "Envoy still running after {within:?}; log:\n{}",
                    envoy.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(self, dir: tempfile::TempDir, config: PathBuf) -> Result<Envoy> {
        let log_path = dir.path().join("envoy.log");
        let admin_path = dir.path().join("admin-address");
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        let child = Command::new(tools::envoy_bin()?)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &self.concurrency.to_string()])
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log_path)
            .args(["-l", "info"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting envoy")?;
        let logs = vec![log_path, dir.path().join("stderr.log")];
        Ok(Envoy {
            name: self.name.clone(),
            process: Process::new(&format!("Envoy ({})", self.name), child, logs),
            dir,
            admin: String::new(),
            listeners: BTreeMap::new(),
            http: reqwest::Client::builder().no_proxy().build()?,
        })
    }
}

/// A running Envoy. Dropping it stops the process; a failing test gets Envoy's log printed.
pub struct Envoy {
    name: String,
    // Declared before `dir`: the process (and its log printing) goes before its files do.
    process: Process,
    dir: tempfile::TempDir,
    admin: String,
    listeners: BTreeMap<String, u16>,
    http: reqwest::Client,
}

impl Envoy {
    async fn wait_ready(&mut self) -> Result<()> {
        let admin_path = self.dir.path().join("admin-address");
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.try_exit() {
                bail!(
                    "Envoy ({}) exited during startup with {status}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if let Ok(addr) = std::fs::read_to_string(&admin_path) {
                let addr = addr.trim();
                if !addr.is_empty() {
                    self.admin = format!("http://{addr}");
                    if let Ok(resp) = self.http.get(format!("{}/ready", self.admin)).send().await {
                        if resp.status().is_success() {
                            return Ok(());
                        }
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "Envoy ({}) not ready after 30s; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn read_listeners(&self) -> Result<BTreeMap<String, u16>> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/listeners?format=json", self.admin))
            .send()
            .await?
            .json()
            .await?;
        let mut ports = BTreeMap::new();
        for l in body["listener_statuses"].as_array().into_iter().flatten() {
            let name = l["name"].as_str().unwrap_or_default().to_string();
            let port = l["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .ok_or_else(|| anyhow!("listener {name} has no port in /listeners: {l}"))?;
            ports.insert(name, u16::try_from(port)?);
        }
        Ok(ports)
    }

    /// The port Envoy bound for the named listener.
    pub fn port(&self, listener: &str) -> u16 {
        match self.listeners.get(listener) {
            Some(p) => *p,
            None => panic!(
                "no listener named {listener}; have {:?}",
                self.listeners.keys()
            ),
        }
    }

    /// `http://127.0.0.1:<port><path>` for the named listener.
    pub fn url(&self, listener: &str, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port(listener), path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{}", self.admin, path)
    }

    /// A stat's value (counter or gauge) by exact name, `None` when Envoy has no such stat.
    pub async fn stat(&self, name: &str) -> Result<Option<u64>> {
        let text = self
            .http
            .get(self.admin_url(&format!("/stats?filter=^{}$", regex_escape(name))))
            .send()
            .await?
            .text()
            .await?;
        for line in text.lines() {
            if let Some((n, v)) = line.split_once(": ") {
                if n == name {
                    return Ok(Some(v.trim().parse()?));
                }
            }
        }
        Ok(None)
    }

    /// The sum of every stat whose name matches `regex` (0 when none exists yet).
    pub async fn stat_sum(&self, regex: &str) -> Result<u64> {
        let text = self
            .http
            .get(self.admin_url(&format!("/stats?filter={regex}")))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter_map(|l| l.rsplit_once(": "))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum())
    }

    /// Entries Envoy's file-system HTTP cache has finished writing (it stores asynchronously).
    pub async fn cache_entries(&self) -> Result<u64> {
        self.stat_sum(r"^cache\.size_count\.").await
    }

    /// Waits until a stat reaches at least `min` (stats are flushed asynchronously).
    pub async fn wait_stat_at_least(&self, name: &str, min: u64) -> Result<u64> {
        wait::until(
            &format!("stat {name} >= {min}"),
            Duration::from_secs(10),
            || async { Ok(self.stat(name).await?.filter(|v| *v >= min)) },
        )
        .await
    }

    /// Everything Envoy has logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Waits until Envoy's log contains `needle`, returning the whole log.
    pub async fn wait_log(&self, needle: &str) -> Result<String> {
        self.process.wait_log(needle).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Sends SIGTERM and waits for the process to exit (for drain tests).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.process.terminate(within)
    }
}

/// A loopback HTTP client: no proxy, `timeout` per request.
pub fn try_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
}

/// A client for test requests to Envoy: no proxy, a 10 s timeout.
pub fn client() -> reqwest::Client {
    match try_client(Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => panic!("building the test HTTP client: {e}"),
    }
}

/// The usual test setup: `tests/envoy/single-upstream.yaml` with `filters` (router appended)
/// in front of an upstream on `upstream_port`.
pub fn single_upstream(
    name: &str,
    filters: Vec<serde_json::Value>,
    upstream_port: u16,
) -> Result<EnvoyBuilder> {
    Ok(
        EnvoyBuilder::from_repo_file(name, "tests/envoy/single-upstream.yaml")?
            .var("HTTP_FILTERS", crate::chain::with_router(filters))
            .var("UPSTREAM_PORT", upstream_port),
    )
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The stat Envoy keeps for a metric a wasm filter defines (`wasmcustom.<name>`).
pub fn custom(metric: &str) -> String {
    format!("wasmcustom.{metric}")
}
