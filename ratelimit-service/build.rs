//! Generates the Envoy rate limit and rate limit quota (RLQS) protocol types and edgegate's revocation and quota lease APIs
//! from `proto/` at the workspace root.

fn main() -> std::io::Result<()> {
    let root = "../proto";
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                format!("{root}/envoy/service/ratelimit/v3/rls.proto"),
                format!("{root}/envoy/service/rate_limit_quota/v3/rlqs.proto"),
                format!("{root}/envoy/extensions/common/ratelimit/v3/ratelimit.proto"),
                format!("{root}/envoy/config/core/v3/base.proto"),
                format!("{root}/envoy/type/v3/ratelimit_unit.proto"),
                format!("{root}/edgegate/revocation/v1/revocation.proto"),
                format!("{root}/edgegate/ratelimit/v1/lease.proto"),
            ],
            &[root.to_string()],
        )?;
    println!("cargo:rerun-if-changed={root}");
    Ok(())
}
