//! Redis processes for tests: a standalone server and a 3-primary cluster, on free loopback
//! ports, with persistence off, killed on drop. Readiness is polled (PING / `cluster info`),
//! never slept on.
//!
//! A missing `redis-server` is an error (tests fail, they do not skip): run
//! `scripts/bootstrap.sh`.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);

/// `redis-server` from PATH or /usr/bin, or a clear error.
fn binary(name: &str) -> Result<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    from_path
        .or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
        .ok_or_else(|| {
            anyhow!("`{name}` not found in PATH: run scripts/bootstrap.sh to install Redis")
        })
}

/// A loopback port nobody listens on right now (and, for clusters, its bus port too).
fn free_port(with_bus_port: bool) -> Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !with_bus_port {
            return Ok(port);
        }
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port found")
}

/// Sends one inline command and returns the raw reply (enough for PING and INFO-like text).
fn command(port: u16, cmd: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(format!("{cmd}\r\n").as_bytes())?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait_until(what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if matches!(ready(), Ok(true)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {START_TIMEOUT:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// One redis-server process (restartable on the same port).
struct Process {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Process {
    fn spawn(&mut self) -> Result<()> {
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let mut cmd = Command::new(binary("redis-server")?);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().context("starting redis-server")?;
        let port = self.port;
        let result = wait_until(
            &format!("redis-server on port {port} to answer PING"),
            || {
                if let Some(status) = child.try_wait()? {
                    bail!("redis-server exited with {status}");
                }
                Ok(command(port, "PING")?.starts_with("+PONG"))
            },
        );
        if let Err(err) = result {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(err.context(format!("redis-server log:\n{log}")));
        }
        self.child = Some(child);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a process on a fresh free port, retrying if another process grabbed it first.
/// A `fixed` port (not 0) is tried once.
fn start_process(
    dir: &Path,
    extra: impl Fn(u16) -> Vec<String>,
    bus: bool,
    fixed: u16,
) -> Result<Process> {
    let mut last = None;
    for _ in 0..5 {
        let port = if fixed == 0 {
            free_port(bus)?
        } else {
            // Another server there would answer our PING: refuse a taken port up front.
            TcpListener::bind(("127.0.0.1", fixed))
                .with_context(|| format!("port {fixed} is taken"))?;
            fixed
        };
        let mut process = Process {
            port,
            dir: dir.to_path_buf(),
            extra: extra(port),
            child: None,
        };
        match process.spawn() {
            Ok(()) => return Ok(process),
            Err(err) if err.to_string().contains("not found in PATH") => return Err(err),
            Err(err) if fixed != 0 => return Err(err),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("redis-server did not start")))
}

/// A standalone Redis on 127.0.0.1 (plus a unix socket), persistence off.
pub struct RedisServer {
    process: Process,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Result<Self> {
        Self::start_on(0)
    }

    /// The same on a given port (0: a free one), e.g. the demo's fixed port.
    pub fn start_on(port: u16) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("redis.sock");
        let process = start_process(
            dir.path(),
            |_| {
                vec![
                    "--unixsocket".into(),
                    socket.display().to_string(),
                    "--unixsocketperm".into(),
                    "700".into(),
                ]
            },
            false,
            port,
        )?;
        Ok(RedisServer { process, _dir: dir })
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.process.port)
    }

    /// `unix:///<tmp>/redis.sock`
    pub fn unix_url(&self) -> String {
        format!("unix://{}", self.process.dir.join("redis.sock").display())
    }

    /// Kills the server (data is lost: persistence is off).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts it again on the same port and waits for PING.
    pub fn start_again(&mut self) -> Result<()> {
        self.process.stop();
        let _ = std::fs::remove_file(self.process.dir.join("redis.sock"));
        self.process.spawn()
    }

    /// Runs one inline command (e.g. `FLUSHALL`) and returns the raw reply.
    pub fn command(&self, cmd: &str) -> Result<String> {
        command(self.process.port, cmd)
    }

    /// The `EVALSHA` and `EVAL` calls this server has run (`INFO commandstats`).
    pub fn script_calls(&self) -> Result<u64> {
        let stats = self.command("INFO commandstats")?;
        Ok(stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum())
    }
}

/// A Redis Cluster of three primaries (no replicas) on loopback.
pub struct RedisCluster {
    nodes: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let node_dir = dir.path().to_path_buf();
            nodes.push(start_process(
                dir.path(),
                move |port| {
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        node_dir
                            .join(format!("nodes-{port}.conf"))
                            .display()
                            .to_string(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                    ]
                },
                true,
                0,
            )?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new(binary("redis-cli")?)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for node in &nodes {
            let port = node.port;
            wait_until(&format!("cluster_state:ok on port {port}"), || {
                Ok(command(port, "CLUSTER INFO")?.contains("cluster_state:ok"))
            })?;
        }
        Ok(RedisCluster { nodes, _dir: dir })
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.addrs().join(","))
    }

    /// `127.0.0.1:<port>` of each primary.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}
