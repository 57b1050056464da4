//! OCI images of the wasm filters for Istio's WasmPlugin (`make oci`): each `dist/<module>.wasm`
//! becomes the *compat* image Istio pulls (one `tar+gzip` layer holding `plugin.wasm`), built by
//! `podman build`, tagged `<REGISTRY>/<module>:<version>` and pushed by `podman push`, then pulled
//! back by digest with `skopeo` and read as Istio reads it (the last layer's media type, the
//! `plugin.wasm` inside) to check that the registry serves the module's exact bytes. Istio's
//! WasmPlugin manifests are then pinned to `oci://<tag>@<digest>`.

use crate::containers;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The layer media type Istio's fetcher reads as the compat variant of an OCI image
/// (istio/pkg/wasm/imagefetcher.go, `extractOCIStandardImage`).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file Istio looks for in that layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// The tag: the workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One filter module to publish.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub wasm: PathBuf,
}

/// Every `*.wasm` in `dir` (normally `dist/`), by name.
pub fn modules_in(dir: &Path) -> Result<Vec<Module>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: run `make build` first", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Module { name, wasm: path });
        }
    }
    if out.is_empty() {
        bail!("no *.wasm in {}: run `make build` first", dir.display());
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Where images go: `host[:port][/path]`, and whether TLS is verified.
#[derive(Debug, Clone)]
pub struct Registry {
    pub prefix: String,
    pub tls_verify: bool,
}

impl Registry {
    /// `tls_verify` defaults to off for a loopback registry (plain HTTP, as a local test or
    /// development registry serves), on for every other.
    pub fn new(prefix: &str, tls_verify: Option<bool>) -> Result<Self> {
        let prefix = prefix
            .trim()
            .trim_start_matches("oci://")
            .trim_end_matches('/');
        if prefix.is_empty() || prefix.contains("://") || prefix.contains(char::is_whitespace) {
            bail!("REGISTRY must be host[:port][/path] (e.g. registry.example.com/edgegate), not {prefix:?}");
        }
        let host = prefix.split('/').next().unwrap_or_default();
        let loopback = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|l| host == *l || host.starts_with(&format!("{l}:")));
        Ok(Self {
            prefix: prefix.to_string(),
            tls_verify: tls_verify.unwrap_or(!loopback),
        })
    }

    pub fn host(&self) -> &str {
        self.prefix.split('/').next().unwrap_or_default()
    }

    fn tls_flag(&self, name: &str) -> String {
        format!("--{name}={}", self.tls_verify)
    }
}

/// An image pushed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub module: String,
    /// `<registry>/<module>:<version>`.
    pub tag: String,
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
}

impl Published {
    /// `<registry>/<module>@sha256:...`.
    pub fn by_digest(&self) -> String {
        let repository = self.tag.rsplit_once(':').map_or(&*self.tag, |(r, _)| r);
        format!("{repository}@{}", self.digest)
    }

    /// The WasmPlugin url: the tag for people, the digest for the puller.
    pub fn url(&self) -> String {
        format!("oci://{}@{}", self.tag, self.digest)
    }
}

/// Builds, pushes, pulls back and checks every module; the first failure stops.
pub fn publish(registry: &Registry, modules: &[Module]) -> Result<Vec<Published>> {
    let mut out = Vec::new();
    for module in modules {
        let local = build(module)?;
        let published = push(registry, module, &local)?;
        let scratch = tempfile::Builder::new().prefix("oci-pull-").tempdir()?;
        let pulled = pull_wasm(registry, &published.by_digest(), scratch.path())?;
        let built = std::fs::read(&module.wasm)?;
        if pulled != built {
            bail!(
                "{} pulled back by digest holds {} bytes that are not {} ({} bytes): the registry \
                 does not serve what was pushed",
                published.by_digest(),
                pulled.len(),
                module.wasm.display(),
                built.len()
            );
        }
        out.push(published);
    }
    Ok(out)
}

/// `podman build`s the compat image of `module` (`FROM scratch`, one `COPY` of `plugin.wasm`,
/// every timestamp at the epoch so the same module gives the same digest) and returns its local
/// name.
pub fn build(module: &Module) -> Result<String> {
    let context = tempfile::Builder::new().prefix("oci-build-").tempdir()?;
    std::fs::copy(&module.wasm, context.path().join(PLUGIN_FILE))
        .with_context(|| format!("reading {}", module.wasm.display()))?;
    let containerfile = context.path().join("Containerfile");
    std::fs::write(
        &containerfile,
        format!("FROM scratch\nCOPY {PLUGIN_FILE} /{PLUGIN_FILE}\n"),
    )?;
    let local = format!("localhost/edgegate/{}:{VERSION}", module.name);
    containers::run(
        &format!("podman build of {local}"),
        containers::command("podman")?
            .args([
                "build",
                "--quiet",
                "--timestamp",
                "0",
                "--format",
                "oci",
                "-t",
            ])
            .arg(&local)
            .arg("-f")
            .arg(&containerfile)
            .arg(context.path()),
    )?;
    Ok(local)
}

/// `podman push`es `local` as `<registry>/<module>:<version>` (layers gzip-compressed: the
/// media type Istio reads) and returns the digest podman computed for what it sent.
pub fn push(registry: &Registry, module: &Module, local: &str) -> Result<Published> {
    let tag = format!("{}/{}:{VERSION}", registry.prefix, module.name);
    let dir = tempfile::tempdir()?;
    let digest_file = dir.path().join("digest");
    let out = containers::command("podman")?
        .args(["push", "--quiet", "--compression-format", "gzip"])
        .arg(registry.tls_flag("tls-verify"))
        .arg("--digestfile")
        .arg(&digest_file)
        .arg(local)
        .arg(format!("docker://{tag}"))
        .output()
        .context("starting podman push")?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        bail!(
            "pushing {tag} failed: {}\npodman said: {}",
            explain(registry, &said),
            last_line(&said)
        );
    }
    let digest = std::fs::read_to_string(&digest_file)
        .context("podman push wrote no digest")?
        .trim()
        .to_string();
    check_digest_syntax(&digest)?;
    Ok(Published {
        module: module.name.clone(),
        tag,
        digest,
    })
}

/// What a failed registry call most likely means, for the message.
fn explain(registry: &Registry, said: &str) -> String {
    let host = registry.host();
    if [
        "connection refused",
        "no such host",
        "i/o timeout",
        "connection reset",
        "no route to host",
    ]
    .iter()
    .any(|s| said.contains(s))
    {
        format!("the registry {host} is not reachable (is it running? is REGISTRY right?)")
    } else if said.contains("server gave HTTP response to HTTPS client") {
        format!("the registry {host} speaks plain HTTP: pass TLS_VERIFY=false")
    } else if said.contains("does not match") || said.contains("digest") {
        format!(
            "the registry {host} returned content whose digest is not the one requested: it \
             does not serve what was pushed"
        )
    } else if said.contains("unauthorized") || said.contains("authentication required") {
        format!("the registry {host} wants credentials: `podman login {host}` first")
    } else {
        format!("the registry {host} refused the request")
    }
}

/// A tool's final error line (podman logs each retry before it).
fn last_line(said: &str) -> &str {
    said.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(said)
        .trim()
}

fn check_digest_syntax(digest: &str) -> Result<()> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| anyhow!("{digest:?} is not a sha256 digest"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        bail!("{digest:?} is not a sha256 digest");
    }
    Ok(())
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
}

/// Pulls `<repository>@<digest>` with `skopeo` into `dir` and returns the `plugin.wasm` of its
/// last layer, after checking (as well as skopeo does) that the manifest and the layer have the
/// digests they are named by, and (as Istio does) that the layer is `tar+gzip`.
pub fn pull_wasm(registry: &Registry, by_digest: &str, dir: &Path) -> Result<Vec<u8>> {
    let (_, digest) = by_digest
        .rsplit_once('@')
        .ok_or_else(|| anyhow!("{by_digest} names no digest"))?;
    let out = containers::command("skopeo")?
        .args(["copy", "--quiet"])
        .arg(registry.tls_flag("src-tls-verify"))
        .arg(format!("docker://{by_digest}"))
        .arg(format!("dir:{}", dir.display()))
        .output()
        .context("starting skopeo copy")?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        bail!(
            "pulling {by_digest} back failed: {}\nskopeo said: {}",
            explain(registry, &said),
            last_line(&said)
        );
    }
    let manifest_bytes = std::fs::read(dir.join("manifest.json"))?;
    let served = sha256(&manifest_bytes);
    if served != digest {
        bail!(
            "pulling {by_digest} back: the registry returned a manifest whose digest is \
             {served}, not {digest}"
        );
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .with_context(|| format!("{by_digest}: the manifest is not an OCI/Docker manifest"))?;
    let layer = manifest
        .layers
        .last()
        .ok_or_else(|| anyhow!("{by_digest}: the image has no layer"))?;
    if layer.media_type != LAYER_MEDIA_TYPE {
        bail!(
            "{by_digest}: the last layer is {}, Istio reads {LAYER_MEDIA_TYPE}",
            layer.media_type
        );
    }
    let hex = layer.digest.trim_start_matches("sha256:");
    let blob = std::fs::read(dir.join(hex))
        .with_context(|| format!("{by_digest}: layer {} was not pulled", layer.digest))?;
    if sha256(&blob) != layer.digest {
        bail!("{by_digest}: layer {} has another digest", layer.digest);
    }
    plugin_from_layer(&blob).with_context(|| format!("{by_digest}: layer {}", layer.digest))
}

/// The `plugin.wasm` (by base name, as Istio matches it) of a `tar+gzip` layer.
pub fn plugin_from_layer(blob: &[u8]) -> Result<Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    for entry in archive.entries().context("not a tar+gzip layer")? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path.file_name().is_some_and(|n| n == PLUGIN_FILE) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
    }
    bail!("no {PLUGIN_FILE} in the layer")
}

/// The module an `oci://` url names: its last path segment without tag or digest.
pub fn module_of_url(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("oci://")?;
    let rest = rest.split('@').next()?;
    let last = rest.rsplit('/').next()?;
    let name = last.split(':').next()?;
    (!name.is_empty() && rest.contains('/')).then_some(name)
}

/// Rewrites the `url: oci://...` line of every `wasm-*.yaml` in `dir` (Istio's WasmPlugins) to
/// the published image of the module it names. Returns (file, new url) for each; a url naming a
/// module that was not published is an error (nothing is written then).
pub fn pin_istio(dir: &Path, published: &[Published]) -> Result<Vec<(PathBuf, String)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wasm-") && n.ends_with(".yaml"))
        })
        .collect();
    files.sort();
    let mut writes = Vec::new();
    let mut pinned = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            match trimmed.strip_prefix("url: ").map(str::trim) {
                Some(url) if url.starts_with("oci://") => {
                    let module = module_of_url(url)
                        .ok_or_else(|| anyhow!("{}: cannot read {url}", file.display()))?;
                    let image = published
                        .iter()
                        .find(|p| p.module == module)
                        .ok_or_else(|| {
                            anyhow!(
                                "{}: {url} names {module}, which has no image",
                                file.display()
                            )
                        })?;
                    let indent = &line[..line.len() - trimmed.len()];
                    out.push_str(&format!("{indent}url: {}\n", image.url()));
                    pinned.push((file.clone(), image.url()));
                }
                _ => out.push_str(line),
            }
        }
        writes.push((file, out));
    }
    for (file, text) in writes {
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_module() {
        for url in [
            "oci://registry.example.com/edgegate/jwt_auth:0.1.0",
            "oci://127.0.0.1:5000/edgegate/jwt_auth:0.1.0@sha256:abc",
            "oci://r/jwt_auth@sha256:abc",
        ] {
            assert_eq!(module_of_url(url), Some("jwt_auth"), "{url}");
        }
        assert_eq!(module_of_url("file:///x/jwt_auth.wasm"), None);
        assert_eq!(module_of_url("oci://jwt_auth"), None);
    }

    #[test]
    fn registry_names_are_checked_and_loopback_is_plain_http() {
        assert!(
            !Registry::new("127.0.0.1:5000/edgegate", None)
                .unwrap()
                .tls_verify
        );
        assert!(!Registry::new("localhost:5000", None).unwrap().tls_verify);
        assert!(
            Registry::new("registry.example.com/edgegate", None)
                .unwrap()
                .tls_verify
        );
        assert!(
            !Registry::new("registry.example.com", Some(false))
                .unwrap()
                .tls_verify
        );
        assert_eq!(
            Registry::new("oci://r.example.com/x/", None)
                .unwrap()
                .prefix,
            "r.example.com/x"
        );
        for bad in ["", "https://r.example.com", "r example"] {
            assert!(Registry::new(bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pinning_rewrites_only_the_url_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# url: oci://registry.example.com/edgegate/transform:0.1.0 (a comment)\nspec:\n  url: oci://registry.example.com/edgegate/transform:0.1.0\n  pluginName: transform\n";
        std::fs::write(dir.path().join("wasm-transform.yaml"), text).unwrap();
        std::fs::write(dir.path().join("other.yaml"), "url: oci://x/transform:1\n").unwrap();
        let image = Published {
            module: "transform".into(),
            tag: "127.0.0.1:5000/e/transform:0.1.0".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
        };
        let pinned = pin_istio(dir.path(), std::slice::from_ref(&image)).unwrap();
        assert_eq!(pinned.len(), 1);
        let after = std::fs::read_to_string(dir.path().join("wasm-transform.yaml")).unwrap();
        assert_eq!(
            after,
            text.replace(
                "  url: oci://registry.example.com/edgegate/transform:0.1.0",
                &format!("  url: {}", image.url())
            )
        );
        assert_eq!(
            image.by_digest(),
            format!("127.0.0.1:5000/e/transform@{}", image.digest)
        );
        // A url naming a module without an image: an error, and nothing written.
        std::fs::write(
            dir.path().join("wasm-other.yaml"),
            "  url: oci://registry.example.com/edgegate/nope:0.1.0\n",
        )
        .unwrap();
        assert!(pin_istio(dir.path(), &[image]).is_err());
    }
}
