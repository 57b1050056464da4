//! Every Envoy YAML in the repository passes `envoy --mode validate`: shipped configs under
//! `envoy/` and the test templates under `tests/envoy/`, rendered with sample values.

use gateway_tests::{chain, envoy, template, tools};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // Istio and docker-compose manifests are not Envoy bootstrap configs.
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name != "istio" {
                yaml_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("docker-compose"))
        {
            out.push(path);
        }
    }
}

/// A sample value for every placeholder name used by the repository's templates. A template
/// with a placeholder missing here fails the test, so new templates cannot dodge validation.
fn sample(name: &str) -> Option<String> {
    let dist = |m: &str| tools::wasm(m).map(|p| p.display().to_string());
    Some(match name {
        // Port 0: configs with several listeners validate without address clashes.
        n if n.ends_with("_PORT") => "0".to_string(),
        n if n.ends_with("_WASM") => {
            dist(&n.trim_end_matches("_WASM").to_ascii_lowercase()).ok()?
        }
        "INVENTORY_DESCRIPTOR" => tools::dist_bin("inventory.pb").ok()?.display().to_string(),
        "HTTP_FILTERS" => chain::with_router(vec![chain::wasm("passthrough", &json!({})).ok()?]),
        "UPSTREAM_FILTERS" => chain::with_upstream_codec(vec![]),
        "JSON_BODY" => template::yaml_string("{\"a\":1}"),
        "FAILURE_MODE_DENY" => "true".to_string(),
        "DIST" => tools::repo_root().join("dist").display().to_string(),
        "CACHE_DIR" => std::env::temp_dir().display().to_string(),
        // envoy/gateway.yaml: the demo's values.
        "ROUTE_TIMEOUT" => "8s".to_string(),
        "REPORT_TIMEOUT" => "30s".to_string(),
        "ACCESS_LOG" => "/dev/stdout".to_string(),
        "AUDIT_LOG" => "/dev/stdout".to_string(),
        _ => return None,
    })
}

#[test]
fn every_envoy_yaml_in_the_repo_validates() {
    let root = tools::repo_root();
    let mut files = Vec::new();
    yaml_files(&root.join("envoy"), &mut files);
    yaml_files(&root.join("tests/envoy"), &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no Envoy YAML found under envoy/ or tests/envoy/"
    );
    let out_dir = tempfile::tempdir().unwrap();
    // Envoy loads TLS certificates while validating: CERT_DIR gets a real, fresh pair.
    let cert_dir = tempfile::tempdir().unwrap();
    tools::tls_certificate(cert_dir.path(), "gateway.localhost").unwrap();
    let mut failures = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).unwrap();
        let mut vars = BTreeMap::new();
        for name in template::placeholders(&text) {
            let value = if name == "CERT_DIR" {
                Some(cert_dir.path().display().to_string())
            } else {
                sample(&name)
            };
            match value {
                Some(v) => {
                    vars.insert(name, v);
                }
                None => failures.push(format!(
                    "{}: no sample value for {{{{ {name} }}}}",
                    file.display()
                )),
            }
        }
        let rendered = match template::render(&text, &vars) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e:#}", file.display()));
                continue;
            }
        };
        let path = out_dir.path().join(format!("{i}.yaml"));
        std::fs::write(&path, rendered).unwrap();
        if let Err(e) = envoy::validate_file(&path) {
            failures.push(format!("{}: {e:#}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} configs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("validated {} Envoy configs", files.len());
}
