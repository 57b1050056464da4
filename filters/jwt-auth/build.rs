//! Generates the revocation API types from `proto/` at the workspace root (needs `protoc`,
//! installed by scripts/bootstrap.sh).

fn main() -> std::io::Result<()> {
    let root = "../../proto";
    prost_build::compile_protos(
        &[format!("{root}/edgegate/revocation/v1/revocation.proto")],
        &[root.to_string()],
    )?;
    println!("cargo:rerun-if-changed={root}/edgegate");
    Ok(())
}
