//! `make oci` against a real registry (Debian's docker-registry on 127.0.0.1): every
//! `dist/*.wasm` is pushed, pulled back by digest and byte-identical to the module; the pinned
//! WasmPlugins name `oci://<registry>/<module>:<version>@<digest>`; the modules pulled from those
//! urls run the Istio route table in real Envoy. A registry that is down, or one that serves
//! content of another digest, fails `make oci` with a message saying so, and pins nothing.

use crate::prelude::*;
use crate::routes::check_route_table;
use crate::support::{istio_dir, load_from, of_kind};
use gateway_tests::oci::{self, Registry, VERSION};
use gateway_tests::registry::LocalRegistry;
use std::path::Path;
use std::process::{Command, Output};

/// `make oci`'s program: `--registry prefix`, the repository's dist/, pinning `istio`.
fn publish(prefix: &str, dist: &Path, istio: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-publish"));
    cmd.args(["--registry", prefix, "--dist"]).arg(dist);
    match istio {
        Some(dir) => cmd.arg("--istio-dir").arg(dir),
        None => cmd.arg("--no-pin"),
    };
    cmd.current_dir(tools::repo_root()).output().unwrap()
}

/// A copy of envoy/istio/ to pin.
fn istio_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(istio_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// module -> (tag, digest), from the "  <tag>@<digest>" lines `make oci` prints.
fn printed_images(stdout: &str) -> BTreeMap<String, (String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(|l| {
            let (tag, digest) = l.split_once('@').unwrap();
            let url = format!("oci://{tag}");
            let module = oci::module_of_url(&url).unwrap().to_string();
            (module, (tag.to_string(), digest.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_oci_publishes_every_module_and_the_pinned_urls_run_in_envoy() {
    let registry = LocalRegistry::start().await.unwrap();
    let prefix = format!("{}/edgegate", registry.addr());
    let dist = tools::repo_root().join("dist");
    let istio = istio_copy();
    let out = publish(&prefix, &dist, Some(istio.path()));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));

    // Every module, tagged with the version.
    let images = printed_images(&stdout);
    let modules = oci::modules_in(&dist).unwrap();
    let names: BTreeSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        images.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        names
    );
    for (module, (tag, _)) in &images {
        assert_eq!(*tag, format!("{prefix}/{module}:{VERSION}"));
    }

    // Pulled back by digest (skopeo), as Istio reads it: the module's exact bytes.
    let pull = Registry::new(registry.addr(), None).unwrap();
    let pulled_dir = tempfile::tempdir().unwrap();
    let mut pulled = BTreeMap::new();
    for module in &modules {
        let (tag, digest) = &images[&module.name];
        let image = oci::Published {
            module: module.name.clone(),
            tag: tag.clone(),
            digest: digest.clone(),
        };
        let scratch = tempfile::tempdir().unwrap();
        let bytes = oci::pull_wasm(&pull, &image.by_digest(), scratch.path()).unwrap();
        assert!(
            bytes == std::fs::read(&module.wasm).unwrap(),
            "{}: pulled bytes differ from {}",
            image.by_digest(),
            module.wasm.display()
        );
        let path = pulled_dir.path().join(format!("{}.wasm", module.name));
        std::fs::write(&path, bytes).unwrap();
        pulled.insert(image.url(), path);
    }

    // The WasmPlugins are pinned to those digests, and their modules are the pulled ones.
    let docs = load_from(istio.path());
    let mut by_plugin = BTreeMap::new();
    for doc in of_kind(&docs, "WasmPlugin") {
        let plugin = doc.str_at("/spec/pluginName");
        let url = doc.str_at("/spec/url");
        let (tag, digest) = &images[plugin];
        assert_eq!(url, format!("oci://{tag}@{digest}"), "{}", doc.id());
        by_plugin.insert(plugin.to_string(), pulled[url].display().to_string());
    }
    assert_eq!(by_plugin.len(), 3, "{by_plugin:?}");
    // Nothing else in the manifests changed.
    for file in std::fs::read_dir(istio.path()).unwrap() {
        let file = file.unwrap().path();
        let original = std::fs::read_to_string(istio_dir().join(file.file_name().unwrap()));
        let pinned = std::fs::read_to_string(&file).unwrap();
        let unpinned: Vec<&str> = pinned
            .lines()
            .filter(|l| !l.contains("url: oci://"))
            .collect();
        let original = original.unwrap();
        let expected: Vec<&str> = original
            .lines()
            .filter(|l| !l.contains("url: oci://"))
            .collect();
        assert_eq!(unpinned, expected, "{}", file.display());
    }
    check_route_table(&docs, &|plugin| by_plugin[plugin].clone()).await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_oci_fails_clearly_when_the_registry_is_down_or_serves_another_digest() {
    // One small module is enough to see the check fail.
    let dist = tempfile::tempdir().unwrap();
    std::fs::copy(
        tools::wasm("passthrough").unwrap(),
        dist.path().join("passthrough.wasm"),
    )
    .unwrap();
    let istio = istio_copy();
    let unpinned = std::fs::read_to_string(istio.path().join("wasm-transform.yaml")).unwrap();

    // Down: a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = publish(
        &format!("127.0.0.1:{port}/edgegate"),
        dist.path(),
        Some(istio.path()),
    );
    let stderr = text(&out.stderr);
    eprintln!("make oci, registry down:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the registry 127.0.0.1:{port} is not reachable (is it running? is REGISTRY right?)"
        )),
        "{stderr}"
    );

    // Another digest: a proxy in front of a real registry alters each manifest it serves.
    let registry = LocalRegistry::start().await.unwrap();
    let proxy = tamper::Proxy::start(registry.addr()).await;
    let out = publish(
        &format!("{}/edgegate", proxy.addr()),
        dist.path(),
        Some(istio.path()),
    );
    let stderr = text(&out.stderr);
    eprintln!("make oci, another digest:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pulling {}/edgegate/passthrough@sha256:",
            proxy.addr()
        )) && stderr.contains("returned content whose digest is not the one requested"),
        "{stderr}"
    );
    assert!(proxy.tampered() > 0, "the proxy altered nothing");
    assert_eq!(
        std::fs::read_to_string(istio.path().join("wasm-transform.yaml")).unwrap(),
        unpinned,
        "a failed publish pinned a manifest"
    );
}

/// A registry front that alters every manifest it serves by digest (one more byte of JSON
/// whitespace: a valid manifest of another digest) and passes everything else through.
mod tamper {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::response::Response;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Shared {
        upstream: String,
        client: reqwest::Client,
        tampered: AtomicUsize,
    }

    pub struct Proxy {
        addr: String,
        shared: Arc<Shared>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Proxy {
        pub async fn start(upstream: &str) -> Proxy {
            let shared = Arc::new(Shared {
                upstream: upstream.to_string(),
                client: reqwest::Client::builder().no_proxy().build().unwrap(),
                tampered: AtomicUsize::new(0),
            });
            let app = axum::Router::new()
                .fallback(forward)
                .with_state(shared.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Proxy { addr, shared, task }
        }

        pub fn addr(&self) -> &str {
            &self.addr
        }

        pub fn tampered(&self) -> usize {
            self.shared.tampered.load(Ordering::SeqCst)
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = parts.headers.clone();
        headers.remove("host");
        let resp = shared
            .client
            .request(
                parts.method.clone(),
                format!("http://{}{path}", shared.upstream),
            )
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let mut headers = resp.headers().clone();
        let mut bytes = resp.bytes().await.unwrap().to_vec();
        if parts.method == "GET" && path.contains("/manifests/sha256:") && status.is_success() {
            bytes.push(b'\n');
            shared.tampered.fetch_add(1, Ordering::SeqCst);
        }
        headers.remove("content-length");
        let mut out = Response::new(Body::from(bytes));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }
}
