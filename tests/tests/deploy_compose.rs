//! `envoy/docker-compose.yaml` without a Docker engine: it parses; every bind-mounted host file
//! and every Dockerfile exists (after `make build`); the Envoy service runs envoy/gateway.yaml
//! with a value for each placeholder, the same values the local demo gives (tests/src/demo.rs),
//! rendered by docker/render-gateway.sh exactly as the demo's renderer does; every service binds
//! the demo's default ports.

use gateway_tests::demo::{self, GatewayPaths, Ports};
use gateway_tests::{template, tools};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const COMPOSE: &str = "envoy/docker-compose.yaml";

/// Where the Envoy container finds its files (the mount targets below).
fn container_paths() -> GatewayPaths {
    GatewayPaths {
        cert_dir: "/edgegate/certs".into(),
        cache_dir: "/var/cache/edgegate".into(),
        access_log: "/dev/stdout".into(),
        wasm_dir: "/edgegate/wasm".into(),
    }
}

struct Compose {
    doc: Value,
    /// The directory relative host paths are resolved against.
    dir: PathBuf,
}

impl Compose {
    fn load() -> Compose {
        let path = tools::repo_root().join(COMPOSE);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut doc: Value = serde_yaml::from_str(&text).unwrap();
        doc.apply_merge().unwrap();
        Compose {
            doc,
            dir: path.parent().unwrap().to_path_buf(),
        }
    }

    fn services(&self) -> &serde_yaml::Mapping {
        self.doc["services"]
            .as_mapping()
            .expect("services is a mapping")
    }

    fn service(&self, name: &str) -> &Value {
        let s = &self.doc["services"][name];
        assert!(s.is_mapping(), "no service {name} in {COMPOSE}");
        s
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_sequence()
            .map(|seq| {
                seq.iter()
                    .map(|x| x.as_str().expect("a string").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn command(&self, name: &str) -> Vec<String> {
        Self::strings(&self.service(name)["command"])
    }

    /// The value after `flag` in a service's command.
    fn flag(&self, name: &str, flag: &str) -> String {
        let cmd = self.command(name);
        let i = cmd
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{name}: no {flag} in {cmd:?}"));
        cmd[i + 1].clone()
    }

    /// (source, target) of each volume entry, short syntax.
    fn volumes(&self, name: &str) -> Vec<(String, String)> {
        Self::strings(&self.service(name)["volumes"])
            .iter()
            .map(|v| {
                let mut parts = v.split(':');
                let source = parts.next().unwrap().to_string();
                let target = parts
                    .next()
                    .unwrap_or_else(|| panic!("{name}: volume {v} has no target"))
                    .to_string();
                (source, target)
            })
            .collect()
    }

    fn host_path(&self, source: &str) -> Option<PathBuf> {
        (source.starts_with('.') || source.starts_with('/')).then(|| self.dir.join(source))
    }
}

#[test]
fn every_mounted_file_and_dockerfile_exists() {
    let compose = Compose::load();
    let mut mounts = 0;
    for (name, service) in compose.services() {
        let name = name.as_str().unwrap();
        if service.get("volumes").is_some() {
            for (source, _) in compose.volumes(name) {
                if let Some(path) = compose.host_path(&source) {
                    assert!(
                        path.exists(),
                        "{name} mounts {source} ({}), which does not exist: run `make build`",
                        path.display()
                    );
                    mounts += 1;
                } else {
                    let named = &compose.doc["volumes"][source.as_str()];
                    assert!(!named.is_null(), "{name}: volume {source} is not declared");
                }
            }
        }
        if let Some(build) = service.get("build") {
            let context = compose.dir.join(build["context"].as_str().unwrap());
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
            assert!(
                dockerfile.is_file(),
                "{name}: {} is missing",
                dockerfile.display()
            );
            assert!(
                context.join("Cargo.toml").is_file(),
                "{name}: the build context is not the repository root"
            );
        } else {
            let image = service["image"].as_str().unwrap_or_default();
            assert!(
                image.starts_with("envoyproxy/envoy:v1.40") || image.starts_with("redis:"),
                "{name}: neither built here nor an official image: {image:?}"
            );
        }
        assert_eq!(
            service["network_mode"].as_str(),
            Some("host"),
            "{name}: every service shares the host's loopback, like the local demo"
        );
    }
    // gateway.yaml, the render script, three filters, the rate-limit config.
    assert!(mounts >= 6, "only {mounts} bind mounts");
}

#[test]
fn envoy_runs_the_demo_template_with_the_demo_values() {
    let compose = Compose::load();
    let envoy = compose.service("envoy");
    assert!(
        envoy["image"]
            .as_str()
            .unwrap()
            .starts_with("envoyproxy/envoy:v1.40"),
        "{:?}",
        envoy["image"]
    );
    let volumes: BTreeMap<String, String> = compose
        .volumes("envoy")
        .into_iter()
        .map(|(s, t)| (t, s))
        .collect();
    // The template is the repository's envoy/gateway.yaml, rendered by the mounted script.
    let template_source = &volumes["/edgegate/gateway.yaml"];
    assert_eq!(
        compose
            .host_path(template_source)
            .unwrap()
            .canonicalize()
            .unwrap(),
        tools::repo_root()
            .join(demo::GATEWAY_TEMPLATE)
            .canonicalize()
            .unwrap()
    );
    let entrypoint = Compose::strings(&envoy["entrypoint"]);
    assert_eq!(
        entrypoint,
        [
            "/bin/sh",
            "/edgegate/render-gateway.sh",
            "/edgegate/gateway.yaml",
            "/tmp/gateway.yaml"
        ]
    );
    assert!(volumes.contains_key("/edgegate/render-gateway.sh"));
    let command = compose.command("envoy");
    assert_eq!(command[..3], ["envoy", "-c", "/tmp/gateway.yaml"]);

    // Its environment is exactly what the demo passes, with the container's paths.
    let env: BTreeMap<String, String> = envoy["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().expect("quote every value").to_string(),
            )
        })
        .collect();
    let expected = demo::gateway_vars(&Ports::DEFAULT, &container_paths());
    assert_eq!(env, expected);
    let text = std::fs::read_to_string(tools::repo_root().join(demo::GATEWAY_TEMPLATE)).unwrap();
    for name in template::placeholders(&text) {
        assert!(
            env.contains_key(&name),
            "{{{{ {name} }}}} has no value in the envoy service"
        );
    }
    // Each file the environment names is mounted (or is the cache's tmpfs, or stdout).
    let paths = container_paths();
    for (var, module) in demo::WASM_MODULES {
        let target = paths.wasm_dir.join(format!("{module}.wasm"));
        assert_eq!(env[var], target.display().to_string());
        assert!(
            volumes.contains_key(&target.display().to_string()),
            "{var}: {} is not mounted",
            target.display()
        );
    }
    assert!(volumes.contains_key(&env["CERT_DIR"]));
    assert_eq!(
        Compose::strings(&envoy["tmpfs"]),
        [env["CACHE_DIR"].clone()]
    );

    // The script renders exactly what the demo's renderer does.
    let out = tempfile::tempdir().unwrap();
    let rendered = out.path().join("gateway.yaml");
    let status = Command::new("sh")
        .arg(compose.dir.join("docker/render-gateway.sh"))
        .arg(tools::repo_root().join(demo::GATEWAY_TEMPLATE))
        .arg(&rendered)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(&env)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(&rendered).unwrap(),
        template::render(&text, &expected).unwrap()
    );
    // A missing variable is refused, not rendered empty.
    let mut partial = env.clone();
    partial.remove("RLS_PORT");
    let status = Command::new("sh")
        .arg(compose.dir.join("docker/render-gateway.sh"))
        .arg(tools::repo_root().join(demo::GATEWAY_TEMPLATE))
        .arg(out.path().join("partial.yaml"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(&partial)
        .status()
        .unwrap();
    assert!(!status.success(), "rendered without RLS_PORT");
}

#[test]
fn services_use_the_demo_ports_and_rate_limit_config() {
    let compose = Compose::load();
    let ports = Ports::DEFAULT;
    for role in demo::ROLES {
        assert_eq!(
            compose.command(role)[..3],
            ["demo-service", "--role", role],
            "service {role}"
        );
        assert_eq!(
            compose.flag(role, "--port"),
            ports.role(role).unwrap().to_string(),
            "service {role}"
        );
    }
    assert_eq!(compose.command("idp")[0], "demo-idp");
    assert_eq!(compose.flag("idp", "--port"), ports.idp.to_string());
    assert_eq!(
        compose.flag("ratelimit", "--grpc-addr"),
        format!("127.0.0.1:{}", ports.rls_grpc)
    );
    assert_eq!(
        compose.flag("ratelimit", "--http-addr"),
        format!("127.0.0.1:{}", ports.rls_http)
    );
    assert_eq!(
        compose.flag("ratelimit", "--redis-url"),
        format!("redis://127.0.0.1:{}", ports.redis)
    );
    assert_eq!(compose.flag("redis", "--port"), ports.redis.to_string());
    assert_eq!(compose.flag("redis", "--bind"), "127.0.0.1");
    // The rate-limit service reads the demo's config file.
    let config = compose.flag("ratelimit", "--config");
    let mounted: BTreeMap<String, String> = compose
        .volumes("ratelimit")
        .into_iter()
        .map(|(s, t)| (t, s))
        .collect();
    let source = compose.host_path(&mounted[&config]).unwrap();
    assert_eq!(
        source.canonicalize().unwrap(),
        tools::repo_root()
            .join(demo::RLS_CONFIG)
            .canonicalize()
            .unwrap()
    );
    // The certificate job writes where Envoy reads it.
    assert_eq!(compose.command("certs")[..2], ["gateway-demo", "certs"]);
    let certs_target = compose.command("certs")[2].clone();
    let certs_volume = compose
        .volumes("certs")
        .into_iter()
        .find(|(_, t)| *t == certs_target)
        .map(|(s, _)| s)
        .expect("the certs job's directory is a volume");
    assert!(compose
        .volumes("envoy")
        .iter()
        .any(|(s, t)| *s == certs_volume && Path::new(t) == container_paths().cert_dir));
}

/// The rate-limit service's revocation token comes from the operator's environment at `up`
/// (compose interpolation), never from a value committed here; reads are not made public.
#[test]
fn ratelimit_revocation_token_comes_from_the_environment_not_the_file() {
    let compose = Compose::load();
    let ratelimit = compose.service("ratelimit");
    let env = ratelimit["environment"]
        .as_mapping()
        .expect("the ratelimit service has an environment mapping");
    assert_eq!(
        env.get("RLS_REVOCATION_TOKEN").and_then(Value::as_str),
        Some("${RLS_REVOCATION_TOKEN:-}"),
        "RLS_REVOCATION_TOKEN must be interpolated from the shell, with no default"
    );
    for (name, value) in env {
        let name = name.as_str().unwrap();
        if name.contains("TOKEN") {
            let value = value.as_str().unwrap_or_default();
            let default = value.split_once(":-").map(|(_, d)| d.trim_end_matches('}'));
            assert!(
                value.starts_with("${")
                    && value.ends_with('}')
                    && default.is_none_or(str::is_empty),
                "{name}: a literal value or default in {value:?} would be a committed secret"
            );
        }
    }
    let command = compose.command("ratelimit");
    for flag in ["--revocation-read-public", "--revocation-token"] {
        assert!(!command.iter().any(|a| a == flag), "{flag} in {command:?}");
    }
}
