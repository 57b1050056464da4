//! `make demo`: the reference gateway (envoy/gateway.yaml) with Redis, the rate-limit service,
//! the demo upstreams and the demo IdP as local processes on loopback, then a banner of what
//! runs where and the curl commands of docs/demo.md. Ctrl-C (or SIGTERM)
//! stops every process.
//!
//! ```text
//! gateway-demo            fixed ports (docs/demo.md; each overridable by DEMO_*_PORT)
//! gateway-demo --auto     every port chosen by the OS (tests/tests/demo.rs)
//! gateway-demo certs DIR  only write a fresh TLS certificate to DIR (docker-compose)
//! ```

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gateway_tests::demo::{Demo, Options};
use std::io::Write as _;
use std::path::PathBuf;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The edgegate gateway demo.
#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Let the OS choose every port instead of the fixed defaults.
    #[arg(long, env = "DEMO_AUTO_PORTS")]
    auto: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write cert.pem, key.pem (for gateway.localhost and 127.0.0.1) and ca.pem to DIR.
    Certs { dir: PathBuf },
}

fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Cmd::Certs { dir }) = args.command {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = gateway_tests::tools::tls_certificate(&dir, "gateway.localhost")?;
        say(&format!(
            "wrote {0}/cert.pem, {0}/key.pem and {1}",
            dir.display(),
            ca.display()
        ));
        return Ok(());
    }
    // Before any child exists: a signal during startup must not kill the demo and orphan them.
    let mut signals = Signals::install()?;
    let opts = Options::from_env(args.auto)?;
    say("edgegate demo: starting (Ctrl-C stops everything)");
    let demo = tokio::select! {
        demo = Demo::start(&opts, |what| say(&format!("  starting {what}"))) => demo?,
        () = signals.recv() => {
            say("interrupted during startup; stopped what had started");
            return Ok(());
        }
    };
    say(&demo.banner());
    signals.recv().await;
    say("stopping Envoy, the demo services, the IdP, ratelimit-service and Redis");
    drop(demo);
    say("stopped");
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from the start.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
