//! Generated protobuf types, nested by package so cross-package references resolve.
#![allow(clippy::all, missing_docs)]

pub mod envoy {
    pub mod service {
        pub mod ratelimit {
            pub mod v3 {
                tonic::include_proto!("envoy.service.ratelimit.v3");
            }
        }
        pub mod rate_limit_quota {
            pub mod v3 {
                tonic::include_proto!("envoy.service.rate_limit_quota.v3");
            }
        }
    }
    pub mod extensions {
        pub mod common {
            pub mod ratelimit {
                pub mod v3 {
                    tonic::include_proto!("envoy.extensions.common.ratelimit.v3");
                }
            }
        }
    }
    pub mod config {
        pub mod core {
            pub mod v3 {
                tonic::include_proto!("envoy.config.core.v3");
            }
        }
    }
    pub mod r#type {
        pub mod v3 {
            tonic::include_proto!("envoy.r#type.v3");
        }
    }
}

pub mod edgegate {
    pub mod ratelimit {
        pub mod v1 {
            tonic::include_proto!("edgegate.ratelimit.v1");
        }
    }
    pub mod revocation {
        pub mod v1 {
            tonic::include_proto!("edgegate.revocation.v1");
        }
    }
}

pub use edgegate::ratelimit::v1 as lease;
pub use edgegate::revocation::v1 as revocation;
pub use envoy::service::rate_limit_quota::v3 as rlqs;
pub use envoy::service::ratelimit::v3 as rls;
