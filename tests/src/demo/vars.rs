//! The values of the gateway template's placeholders: ports, paths, route timeouts and the built
//! files.

use super::{Ports, DIST_FILES, REPORT_TIMEOUT, ROUTE_TIMEOUT};
use crate::template;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the gateway's files are (different on the host and in a container).
#[derive(Debug, Clone)]
pub struct GatewayPaths {
    /// Holds `cert.pem` and `key.pem`.
    pub cert_dir: PathBuf,
    /// A writable directory for Envoy's file-system HTTP cache.
    pub cache_dir: PathBuf,
    pub access_log: PathBuf,
    /// Holds the files of [`DIST_FILES`].
    pub dist_dir: PathBuf,
}

/// A value for every placeholder of [`GATEWAY_TEMPLATE`](super::GATEWAY_TEMPLATE): what the demo
/// passes and what docker-compose's Envoy environment must provide.
pub fn gateway_vars(ports: &Ports, paths: &GatewayPaths) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = ports
        .template_vars()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = |p: &Path| p.display().to_string();
    for (k, v) in [
        ("CERT_DIR", path(&paths.cert_dir)),
        ("CACHE_DIR", path(&paths.cache_dir)),
        ("ACCESS_LOG", path(&paths.access_log)),
        ("AUDIT_LOG", path(&audit_log_beside(&paths.access_log))),
        ("ROUTE_TIMEOUT", ROUTE_TIMEOUT.to_string()),
        ("REPORT_TIMEOUT", REPORT_TIMEOUT.to_string()),
    ] {
        vars.insert(k.to_string(), v);
    }
    for (var, file) in DIST_FILES {
        vars.insert(var.to_string(), path(&paths.dist_dir.join(file)));
    }
    vars
}

/// The audit log's path: `audit.log` next to the access log, or the access log itself when that
/// is a device (`/dev/stdout` in a container, `/dev/null` for the benchmarks): Envoy writes both
/// logs' lines to it then.
pub fn audit_log_beside(access_log: &Path) -> PathBuf {
    match access_log.parent() {
        Some(dir) if dir != Path::new("/dev") && !dir.as_os_str().is_empty() => {
            dir.join("audit.log")
        }
        _ => access_log.to_path_buf(),
    }
}

/// Fails before anything starts when the template's placeholders and [`gateway_vars`] differ.
pub(super) fn check_placeholders(template_text: &str) -> Result<()> {
    let vars = gateway_vars(
        &Ports::DEFAULT,
        &GatewayPaths {
            cert_dir: PathBuf::new(),
            cache_dir: PathBuf::new(),
            access_log: PathBuf::new(),
            dist_dir: PathBuf::new(),
        },
    );
    let used = template::placeholders(template_text);
    let unknown: Vec<&String> = used.iter().filter(|p| !vars.contains_key(*p)).collect();
    let unused: Vec<&String> = vars.keys().filter(|k| !used.contains(k)).collect();
    if !unknown.is_empty() || !unused.is_empty() {
        bail!(
            "placeholders without a demo value: {unknown:?}; \
             demo values without a placeholder: {unused:?}"
        );
    }
    Ok(())
}
