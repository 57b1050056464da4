//! A child process owned by a test: its log files, exit checks, SIGTERM-then-SIGKILL teardown,
//! and its log printed when the test that owns it panics. Envoy and the rate limit service
//! fixtures are both built on it.

use crate::wait;
use anyhow::{anyhow, bail, Context, Result};
pub use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Process {
    name: String,
    child: Option<Child>,
    logs: Vec<PathBuf>,
}

impl Process {
    /// Takes ownership of `child`; `logs` are the files it writes (read in this order).
    pub fn new(name: &str, child: Child, logs: Vec<PathBuf>) -> Self {
        Self {
            name: name.to_string(),
            child: Some(child),
            logs,
        }
    }

    /// Starts `cmd` with stdout piped and waits up to `within` for its first stdout line (where
    /// a service started on port 0 announces its address); the rest of stdout is drained in the
    /// background. A process that exits or stays silent is an error carrying its log.
    pub async fn spawn_announcing(
        name: &str,
        cmd: &mut Command,
        logs: Vec<PathBuf>,
        within: Duration,
    ) -> Result<(Self, String)> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut process = Self::new(name, child, logs);
        let started = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(Ok(line)) if !line.trim().is_empty() => {
                    return Ok((process, line.trim().to_string()))
                }
                Ok(Ok(_)) => {
                    let status = process.wait_exit(Duration::from_secs(2));
                    bail!(
                        "{name} closed stdout without printing its address (exit: {status:?}); \
                         log:\n{}",
                        process.log()
                    );
                }
                Ok(Err(e)) => bail!("reading {name} stdout: {e}"),
                Err(mpsc::TryRecvError::Disconnected) => bail!("stdout reader thread died"),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if let Some(status) = process.try_exit() {
                bail!(
                    "{name} exited during startup with {status}; log:\n{}",
                    process.log()
                );
            }
            if started.elapsed() > within {
                bail!(
                    "{name} printed no address line within {within:?}; log:\n{}",
                    process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            if let Ok(mut file) = std::fs::File::open(path) {
                let _ = file.read_to_string(&mut out);
            }
        }
        out
    }

    /// Waits until the log contains `needle`, returning the whole log.
    pub async fn wait_log(&self, needle: &str) -> Result<String> {
        wait::until(
            &format!("{} log line containing {needle:?}", self.name),
            Duration::from_secs(10),
            || async {
                let log = self.log();
                Ok(log.contains(needle).then_some(log))
            },
        )
        .await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited (it is then no longer owned).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit (drain tests).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        signal(self.pid()?, Signal::SIGTERM);
        self.wait_exit(within)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(150).collect();
            eprintln!("===== {} log, last {} lines =====", self.name, tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("===== end of {} log =====", self.name);
        }
        if self.terminate(Duration::from_secs(3)).is_none() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Sends a signal; a process that already exited (ESRCH) is not an error worth reporting.
pub fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}
