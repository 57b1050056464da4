//! Generates the demo inventory service (`edgegate.inventory.v1`, the gRPC upstream the gateway
//! transcodes REST to) from `proto/` at the workspace root.

fn main() -> std::io::Result<()> {
    let root = "../proto";
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[format!("{root}/edgegate/inventory/v1/inventory.proto")],
            &[root.to_string()],
        )?;
    println!("cargo:rerun-if-changed={root}/edgegate/inventory");
    println!("cargo:rerun-if-changed={root}/google/api");
    Ok(())
}
