//! Generates the lease API types from `proto/` at the workspace root (needs `protoc`, installed
//! by scripts/bootstrap.sh).

fn main() -> std::io::Result<()> {
    let root = "../../proto";
    prost_build::compile_protos(
        &[format!("{root}/edgegate/ratelimit/v1/lease.proto")],
        &[root.to_string()],
    )?;
    println!("cargo:rerun-if-changed={root}/edgegate/ratelimit");
    Ok(())
}
