//! The clients the demo and its test use: plain HTTP, demo-idp's tokens, gRPC health.

use super::ServingStatus;
use anyhow::{bail, Result};
use std::time::Duration;

/// A loopback HTTP client (no proxy) with a 10 s timeout.
pub fn client() -> Result<reqwest::Client> {
    Ok(crate::envoy::try_client(Duration::from_secs(10))?)
}

/// A token from demo-idp (`GET /token`).
pub async fn token(
    http: &reqwest::Client,
    idp: &str,
    sub: &str,
    tenant: &str,
    scope: &str,
) -> Result<String> {
    let resp = http
        .get(format!("{idp}/token"))
        .query(&[("sub", sub), ("tenant", tenant), ("scope", scope)])
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("{idp}/token answered {}", resp.status());
    }
    Ok(resp.text().await?.trim().to_string())
}

/// `grpc.health.v1.Health/Check` (service "") through `base` with a bearer token.
pub async fn grpc_health(base: &str, token: &str) -> Result<ServingStatus> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let channel = tonic::transport::Endpoint::from_shared(base.to_string())?
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut client = HealthClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    });
    let reply = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(reply.into_inner().status())
}
