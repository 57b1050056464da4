//! `envoy/docker-compose.yaml`, read: it parses; every bind-mounted host file and every
//! Dockerfile exists (after `make build`); the Envoy service runs envoy/gateway.yaml with a value
//! for each placeholder, the same values the local demo gives (tests/src/demo.rs), rendered by
//! docker/render-gateway.sh exactly as the demo's renderer does; every service binds the demo's
//! ports, each from its `DEMO_*_PORT` variable with the demo's default.
//!
//! And run: podman-compose brings it up on the images `make images` built, on ports the OS chose,
//! the demo's core steps pass through it, every port it listens on is bound to 127.0.0.1 only,
//! and `down` leaves no container or volume behind.

use gateway_tests::compose::{self, ComposeProject};
use gateway_tests::demo::{self, GatewayPaths, Ports};
use gateway_tests::{template, tools, wait};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const COMPOSE: &str = "envoy/docker-compose.yaml";

/// Where the Envoy container finds its files (the mount targets below).
fn container_paths() -> GatewayPaths {
    GatewayPaths {
        cert_dir: "/edgegate/certs".into(),
        cache_dir: "/var/cache/edgegate".into(),
        access_log: "/dev/stdout".into(),
        dist_dir: "/edgegate/dist".into(),
    }
}

struct Compose {
    doc: Value,
    /// The directory relative host paths are resolved against.
    dir: PathBuf,
}

/// Each `${NAME:-default}` (and `${NAME-default}`) replaced by its default, `${NAME}` by "".
fn interpolate_defaults(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("an unclosed ${") + start;
        let inner = &rest[start + 2..end];
        let default = inner
            .split_once(":-")
            .or_else(|| inner.split_once('-'))
            .map_or("", |(_, d)| d);
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every `${NAME:-default}` of the file: (name, default).
fn interpolated(text: &str) -> Vec<(String, String)> {
    text.split("${")
        .skip(1)
        .map(|s| {
            let inner = &s[..s.find('}').expect("an unclosed ${")];
            let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
            (name.to_string(), default.to_string())
        })
        .collect()
}

impl Compose {
    /// The file with every `${VAR:-default}` at its default (what an empty environment gives).
    fn load() -> Compose {
        Self::parse(&interpolate_defaults(&Self::text()))
    }

    /// The file as written.
    fn load_raw() -> Compose {
        Self::parse(&Self::text())
    }

    fn text() -> String {
        std::fs::read_to_string(tools::repo_root().join(COMPOSE)).unwrap()
    }

    fn parse(text: &str) -> Compose {
        let path = tools::repo_root().join(COMPOSE);
        let mut doc: Value = serde_yaml::from_str(text).unwrap();
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
            panic!("{name}: no build section (Docker builds every image; `make images` too)");
        }
        let image = service["image"].as_str().unwrap_or_default();
        assert!(
            image.starts_with("edgegate-"),
            "{name}: {image:?} is not one of the images `make images` builds"
        );
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
    assert_eq!(envoy["image"].as_str(), Some("edgegate-envoy:1.40.0"));
    // With Docker, that tag is the official Envoy 1.40 image.
    let dockerfile = std::fs::read_to_string(
        compose
            .dir
            .join("..")
            .join(envoy["build"]["dockerfile"].as_str().unwrap()),
    )
    .unwrap();
    assert!(
        dockerfile.contains("\nFROM envoyproxy/envoy:v1.40.0\n"),
        "{dockerfile}"
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
    for (var, file) in demo::DIST_FILES {
        let target = paths.dist_dir.join(file);
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
    let compose = Compose::load_raw();
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

/// Every `${...}` of the file is a demo port variable with the demo's default, or the
/// revocation token: the test (and a user) moves the ports with the `DEMO_*_PORT` variables
/// `make demo` reads, and nothing else changes with the environment.
#[test]
fn ports_come_from_the_demo_port_variables_with_the_demo_defaults() {
    let mut defaults = Ports::DEFAULT;
    let named: BTreeMap<&str, u16> = defaults.named().map(|(var, port)| (var, *port)).into();
    let found = interpolated(&Compose::text());
    assert!(found.len() > 20, "{found:?}");
    let mut used = std::collections::BTreeSet::new();
    for (name, default) in found {
        if name == "RLS_REVOCATION_TOKEN" {
            continue;
        }
        let port = named
            .get(name.as_str())
            .unwrap_or_else(|| panic!("${{{name}}} is not a DEMO_*_PORT variable"));
        assert_eq!(default, port.to_string(), "{name}'s default");
        used.insert(name);
    }
    assert_eq!(
        used.len(),
        named.len(),
        "every demo port is a variable: {used:?}"
    );
}

/// Ports on which something listens, with the (hex) local address of each listener, from
/// /proc/net/tcp and tcp6 (containers on the host network listen in this namespace).
fn listeners() -> BTreeMap<u16, Vec<String>> {
    let mut out: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "sl local_address rem_address st ...": st 0A is LISTEN.
            if fields.len() > 3 && fields[3] == "0A" {
                let (addr, port) = fields[1].rsplit_once(':').unwrap();
                let port = u16::from_str_radix(port, 16).unwrap();
                out.entry(port).or_default().push(addr.to_string());
            }
        }
    }
    out
}

/// `make images`, then the compose file run for real with podman-compose on OS-chosen ports: the
/// demo's core steps through the containers (401/200 with identity headers, the stripped fields,
/// tiny's 429, the per-tenant cache hit), the revocation token from the environment, every port
/// bound to 127.0.0.1 only, and `down` removing every container and volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_up_with_podman_runs_the_demo_steps_and_down_removes_it() {
    let ports = compose::free_ports().unwrap();
    let token = format!(
        "{:032x}",
        std::process::id() as u128 * 0x9e37_79b9_7f4a_7c15 + tools::now() as u128
    );
    let project = format!("edgegate-test-{}", std::process::id());
    let started = std::time::Instant::now();
    let mut up =
        ComposeProject::up(&project, ports, &[("RLS_REVOCATION_TOKEN", token.as_str())]).unwrap();
    let base = |port: u16| format!("http://127.0.0.1:{port}");
    let at = demo::Endpoints {
        gateway: base(ports.gateway),
        idp: base(ports.idp),
        users: base(ports.users),
    };
    let http = demo::client().unwrap();
    // Ready: Envoy has compiled the filters and jwt_auth has its keys from the IdP container.
    wait::until(
        "the gateway to answer a token",
        Duration::from_secs(180),
        || {
            let (http, at) = (http.clone(), at.clone());
            async move {
                let token = demo::token(&http, &at.idp, "ready", "acme", "orders:read").await?;
                let resp = http
                    .get(format!("{}/api/products/1", at.gateway))
                    .bearer_auth(token)
                    .send()
                    .await?;
                Ok((resp.status() == 200).then_some(()))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nenvoy:\n{}", up.logs("envoy")));
    eprintln!("compose: up and ready in {:?}", started.elapsed());

    demo::core_steps(&http, &at)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // The revocation API took the token from the environment (not a literal, not empty).
    let rls = base(ports.rls_http);
    let resp = http.get(format!("{rls}/revocations")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{rls}/revocations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Loopback only: every demo port has a listener, and each is on 127.0.0.1.
    let listening = listeners();
    let mut all = ports;
    for (var, port) in all.named() {
        let addrs = listening
            .get(port)
            .unwrap_or_else(|| panic!("{var}: nothing listens on {port}"));
        assert!(
            addrs.iter().all(|a| a == "0100007F"),
            "{var}: port {port} is bound beyond 127.0.0.1: {addrs:?}"
        );
    }

    let before = up.containers().unwrap();
    assert_eq!(before.len(), 11, "{before:?}");
    let stopping = std::time::Instant::now();
    up.down().unwrap();
    eprintln!("compose: down in {:?}", stopping.elapsed());
    assert_eq!(up.containers().unwrap(), Vec::<String>::new());
    let volumes = gateway_tests::containers::run(
        "podman volume ls",
        gateway_tests::containers::command("podman").unwrap().args([
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=io.podman.compose.project={}", up.project()),
        ]),
    )
    .unwrap();
    assert!(
        volumes.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&volumes.stdout)
    );
}
