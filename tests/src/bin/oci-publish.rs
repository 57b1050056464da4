//! `make oci REGISTRY=host[:port]/path`: packages every `dist/*.wasm` as the OCI image Istio's
//! WasmPlugin pulls, pushes it as `<REGISTRY>/<module>:<version>`, pulls each back by digest and
//! checks its bytes, then pins the WasmPlugin urls of `envoy/istio/wasm-*.yaml` to
//! `oci://<tag>@<digest>` (see `gateway_tests::oci`). Exits 1 on the first failure, with what
//! went wrong and what to do.

use clap::Parser;
use gateway_tests::oci::{self, Registry};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Publish dist/*.wasm as OCI images for Istio's WasmPlugin and pin envoy/istio")]
struct Args {
    /// host[:port][/path] the images are pushed under (the Makefile's REGISTRY).
    #[arg(long, env = "REGISTRY")]
    registry: String,
    /// Verify the registry's TLS certificate (default: false for 127.0.0.1/localhost, true
    /// otherwise).
    #[arg(long)]
    tls_verify: Option<bool>,
    /// The modules to publish: every *.wasm here.
    #[arg(long, default_value = "dist")]
    dist: PathBuf,
    /// The Istio manifests whose WasmPlugin urls are pinned.
    #[arg(long, default_value = "envoy/istio")]
    istio_dir: PathBuf,
    /// Publish and check only; leave the manifests alone.
    #[arg(long)]
    no_pin: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oci: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let registry = Registry::new(&args.registry, args.tls_verify)?;
    let modules = oci::modules_in(&args.dist)?;
    let published = oci::publish(&registry, &modules)?;
    println!(
        "oci: {} images pushed to {} and pulled back by digest, each holding its module's exact \
         bytes as plugin.wasm:",
        published.len(),
        registry.prefix
    );
    for image in &published {
        println!("  {}@{}", image.tag, image.digest);
    }
    if !args.no_pin {
        for (file, url) in oci::pin_istio(&args.istio_dir, &published)? {
            println!("oci: {}: url: {url}", file.display());
        }
    }
    Ok(())
}
