//! The jwt_auth filter (dist/jwt_auth.wasm) in a real Envoy, with a real JWKS endpoint the test
//! controls: the attack corpus, header hygiene, key rotation, fetch storms, IdP outages, garbage
//! and slow IdPs. Keys and tokens are made at test time (`jwt_auth::testing`).
//!
//! One test binary, one module per concern; the provider config, the Envoy set-up and the
//! request helpers are in `support`.

mod attacks;
mod composition;
mod idp;
mod introspection;
mod native;
mod support;

/// What every module of this binary uses.
mod prelude {
    pub use futures_util::StreamExt;
    pub use gateway_tests::envoy::{client, custom, Envoy, EnvoyBuilder};
    pub use gateway_tests::jwks::{JwksReply, JwksServer};
    pub use gateway_tests::ratelimit::RateLimitService;
    pub use gateway_tests::redis::RedisServer;
    pub use gateway_tests::tools::now;
    pub use gateway_tests::upstream::Upstream;
    pub use gateway_tests::{chain, tools, wait};
    pub use jwt_auth::outcome::Denial;
    pub use jwt_auth::testing::{attack_corpus, claims, jwks, keys, sign, token};
    pub use jwt_auth::verify::VerifyError;
    pub use serde_json::{json, Value};
    pub use std::time::{Duration, Instant};
}
