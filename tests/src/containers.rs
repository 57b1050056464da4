//! Podman and skopeo as this repository runs them: with `envoy/docker/containers.conf` (runc,
//! cgroupfs, no default ulimits; `$CONTAINERS_CONF` wins when set), and a missing tool is an
//! error that says how to install it.

use crate::tools;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Output};

/// The podman configuration the repository's container commands use.
pub fn containers_conf() -> PathBuf {
    std::env::var_os("CONTAINERS_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools::repo_root().join("envoy/docker/containers.conf"))
}

/// A command for a container tool (`podman`, `skopeo`, `podman-compose`), with
/// `CONTAINERS_CONF` set.
pub fn command(tool: &str) -> Result<Command> {
    let bin = tools::system_bin(tool).with_context(|| {
        format!("{tool} is needed for OCI images and containers (docker-registry, skopeo, podman, runc, podman-compose)")
    })?;
    let mut cmd = Command::new(bin);
    cmd.env("CONTAINERS_CONF", containers_conf());
    Ok(cmd)
}

/// Runs `cmd`, returning its output; a failure carries both streams, labelled `what`.
pub fn run(what: &str, cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: starting {:?}", cmd.get_program()))?;
    succeeded(what, out)
}

/// `out` if its command succeeded; else an error with both streams, labelled `what`.
pub fn succeeded(what: &str, out: Output) -> Result<Output> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}
