//! `envoy/docker-compose.yaml` run for real: podman-compose (`.venv/bin/podman-compose`, from
//! PyPI) with the repository's podman settings, the demo's ports chosen by the OS and passed as
//! the same `DEMO_*_PORT` variables `make demo` reads, a project name of its own, and
//! `down --volumes` on drop, bounded in time.

use crate::containers;
use crate::demo::Ports;
use crate::tools;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const COMPOSE_FILE: &str = "envoy/docker-compose.yaml";

/// `.venv/bin/podman-compose` (installed by `scripts/bootstrap.sh`).
pub fn podman_compose_bin() -> Result<PathBuf> {
    let path = tools::repo_root().join(".venv/bin/podman-compose");
    if !path.is_file() {
        bail!(
            "podman-compose not found at {}: run `scripts/bootstrap.sh` (or `make test`), which \
             installs it from PyPI into .venv",
            path.display()
        );
    }
    Ok(path)
}

/// Every image the compose file names.
pub fn images() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(tools::repo_root().join(COMPOSE_FILE))?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)?;
    doc.apply_merge()?;
    let mut out: Vec<String> = doc["services"]
        .as_mapping()
        .context("no services")?
        .values()
        .filter_map(|s| s["image"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every demo port, each a port the OS just handed out on 127.0.0.1 (and released).
pub fn free_ports() -> Result<Ports> {
    let mut ports = Ports::DEFAULT;
    let mut held = Vec::new();
    for (_, port) in ports.named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

/// Runs `cmd` with its output captured, killing it after `within`.
fn run_bounded(cmd: &mut Command, within: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let deadline = Instant::now() + within;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "{:?} still running after {within:?}, killed:\n{}{}",
                cmd.get_args().collect::<Vec<_>>(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}

/// A compose project that is up; [`ComposeProject::down`] (or drop) removes its containers,
/// network and volumes.
pub struct ComposeProject {
    project: String,
    ports: Ports,
    env: Vec<(String, String)>,
    up: bool,
}

impl ComposeProject {
    /// `podman-compose up -d --no-build` on `ports`, with `env` added to the environment the
    /// compose file is interpolated from. Every image must exist (`make images`).
    pub fn up(project: &str, ports: Ports, env: &[(&str, &str)]) -> Result<Self> {
        for image in images()? {
            let exists = containers::command("podman")?
                .args(["image", "exists", &image])
                .status()?;
            if !exists.success() {
                bail!("image {image} does not exist: run `make images` (`make test` runs it)");
            }
        }
        let mut vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut named = ports;
        for (var, port) in named.named() {
            vars.push((var.to_string(), port.to_string()));
        }
        let project = ComposeProject {
            project: project.to_string(),
            ports,
            env: vars,
            up: true,
        };
        let out = project.compose(&["up", "-d", "--no-build"], Duration::from_secs(300))?;
        containers::succeeded("podman-compose up", out)?;
        Ok(project)
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    fn compose(&self, args: &[&str], within: Duration) -> Result<Output> {
        let mut cmd = Command::new(podman_compose_bin()?);
        cmd.current_dir(tools::repo_root())
            .env("CONTAINERS_CONF", containers::containers_conf())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-p", &self.project, "-f", COMPOSE_FILE])
            .args(args);
        run_bounded(&mut cmd, within)
    }

    /// The names of the project's containers (running or not).
    pub fn containers(&self) -> Result<Vec<String>> {
        let out = containers::run(
            "podman ps",
            containers::command("podman")?.args([
                "ps",
                "-a",
                "--format",
                "{{.Names}}",
                "--filter",
                &format!("label=io.podman.compose.project={}", self.project),
            ]),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// A service's container log (stdout and stderr).
    pub fn logs(&self, service: &str) -> String {
        let name = format!("{}_{service}_1", self.project);
        match containers::command("podman")
            .and_then(|mut c| Ok(c.args(["logs", "--tail", "60", &name]).output()?))
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("(no log for {name}: {e:#})"),
        }
    }

    /// `podman-compose down --volumes`: containers (stopped within 5 s), network, volumes.
    pub fn down(&mut self) -> Result<()> {
        self.up = false;
        let out = self.compose(&["down", "--volumes", "-t", "5"], Duration::from_secs(180))?;
        containers::succeeded("podman-compose down", out)?;
        Ok(())
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if self.up {
            if std::thread::panicking() {
                for service in ["envoy", "ratelimit", "idp", "certs"] {
                    eprintln!("===== {service} =====\n{}", self.logs(service));
                }
            }
            if let Err(e) = self.down() {
                eprintln!("compose project {}: {e:#}", self.project);
            }
        }
    }
}
