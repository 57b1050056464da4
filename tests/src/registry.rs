//! A private OCI registry for tests: Debian's `docker-registry` (the CNCF distribution
//! registry) on 127.0.0.1 with an OS-chosen port, its storage in a temporary directory, stopped
//! on drop.

use crate::process::Process;
use crate::{tools, wait};
use anyhow::{Context, Result};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct LocalRegistry {
    _process: Process,
    addr: String,
    _dir: tempfile::TempDir,
}

impl LocalRegistry {
    /// Starts the registry and waits until `/v2/` answers.
    pub async fn start() -> Result<Self> {
        let bin = tools::system_bin("docker-registry")?;
        let dir = tempfile::Builder::new().prefix("registry-").tempdir()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = dir.path().join("registry.log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("registry.err"))?)
            .spawn()
            .context("starting docker-registry")?;
        let process = Process::new(
            "docker-registry",
            child,
            vec![log, dir.path().join("registry.err")],
        );
        // "listening on 127.0.0.1:<port>": the port the OS chose.
        let log = process.wait_log("listening on 127.0.0.1:").await?;
        let addr = log
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
            .context("no address in the registry's log")?
            .to_string();
        let client = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("http://{addr}/v2/");
        wait::until("the registry's /v2/", Duration::from_secs(20), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                Ok(client
                    .get(&url)
                    .send()
                    .await?
                    .status()
                    .is_success()
                    .then_some(()))
            }
        })
        .await?;
        Ok(Self {
            _process: process,
            addr,
            _dir: dir,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}
