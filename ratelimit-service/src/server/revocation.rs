//! Token revocation at the edges: the gRPC `edgegate.revocation.v1.RevocationService` and the
//! operator HTTP endpoints share `revoke` and `list` here (metrics, logs) and map errors to their
//! own status codes. Logs name the `jti`, never any other token content.
//!
//! gRPC `Revoke` needs the revocation token in `authorization: Bearer <token>` metadata
//! ([`super::access`], the same check as HTTP `POST /revocations`). `ListRevocations` is open:
//! Envoy's jwt_auth filter polls it without credentials, and it tells only which (issuer, jti)
//! are revoked until when.

use super::{access, Shared};
use crate::proto::revocation::revocation_service_server::RevocationService;
use crate::proto::revocation::{
    ListRevocationsRequest, ListRevocationsResponse, Revocation as ProtoRevocation,
    RevokeRequest as ProtoRevokeRequest, RevokeResponse,
};
use crate::revocation::{RevocationError, RevocationList, RevocationStore, RevokeRequest, Revoked};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Largest RevocationService request tonic decodes (before `Revoke` checks the credential), as
/// HTTP's body limit: a valid `RevokeRequest` (two fields of at most 1 KiB) is about 2 KiB.
pub(super) const MAX_REVOCATION_MESSAGE: usize = 16 * 1024;

/// The gRPC path of `Revoke` (for the refusal log line).
const REVOKE_PATH: &str = "/edgegate.revocation.v1.RevocationService/Revoke";

/// Revokes and records the outcome; `via` names the edge (`grpc`, `http`) in logs.
pub(super) async fn revoke(
    shared: &Shared,
    request: &RevokeRequest,
    via: &'static str,
) -> Result<Revoked, RevocationError> {
    let result = shared.revocations.revoke(request).await;
    match &result {
        Ok(revoked) => {
            shared.metrics.revocation(revoked.changed, revoked.live);
            if revoked.changed {
                tracing::info!(
                    jti = %request.jti,
                    expires_at = request.expires_at,
                    version = revoked.version,
                    live = revoked.live,
                    via,
                    "token revoked"
                );
            } else {
                tracing::info!(
                    jti = %request.jti,
                    expires_at = request.expires_at,
                    via,
                    "token already revoked until at least expires_at; nothing changed"
                );
            }
        }
        Err(err) => log_error(shared, err, "revoke", via),
    }
    result
}

/// Lists and records the outcome.
pub(super) async fn list(
    shared: &Shared,
    since_version: u64,
    via: &'static str,
) -> Result<RevocationList, RevocationError> {
    let result = shared.revocations.list(since_version).await;
    match &result {
        Ok(list) => {
            shared.metrics.revocation_list(list.full, list.live);
            tracing::debug!(
                since_version,
                version = list.version,
                full = list.full,
                entries = list.revocations.len(),
                via,
                "revocations listed"
            );
        }
        Err(err) => log_error(shared, err, "list", via),
    }
    result
}

fn log_error(shared: &Shared, err: &RevocationError, operation: &'static str, via: &'static str) {
    match err {
        RevocationError::Invalid(reason) => {
            tracing::debug!(operation, via, %reason, "revocation request rejected");
        }
        RevocationError::Full { max } => {
            tracing::warn!(
                operation,
                via,
                max,
                "revocation store full; revocation refused"
            );
        }
        RevocationError::Store(store) => {
            shared.metrics.redis_error(store.transient);
            tracing::warn!(operation, via, error = %store, "revocation store failed");
        }
    }
}

/// `INVALID_ARGUMENT` for bad input, `RESOURCE_EXHAUSTED` when full, `UNAVAILABLE` for a
/// transient store failure (retry), `INTERNAL` otherwise.
fn to_status(err: RevocationError) -> Status {
    match err {
        RevocationError::Invalid(message) => Status::invalid_argument(message),
        full @ RevocationError::Full { .. } => Status::resource_exhausted(full.to_string()),
        RevocationError::Store(store) if store.transient => Status::unavailable(store.to_string()),
        RevocationError::Store(store) => Status::internal(store.to_string()),
    }
}

/// `edgegate.revocation.v1.RevocationService`.
pub struct RevocationGrpc {
    shared: Arc<Shared>,
}

impl RevocationGrpc {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        RevocationGrpc { shared }
    }
}

#[tonic::async_trait]
impl RevocationService for RevocationGrpc {
    async fn revoke(
        &self,
        request: Request<ProtoRevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        access::require_grpc(&self.shared, &request, REVOKE_PATH)?;
        let ProtoRevokeRequest {
            issuer,
            jti,
            expires_at,
        } = request.into_inner();
        let request = RevokeRequest {
            issuer,
            jti,
            expires_at,
        };
        let revoked = revoke(&self.shared, &request, "grpc")
            .await
            .map_err(to_status)?;
        Ok(Response::new(RevokeResponse {
            version: revoked.version,
        }))
    }

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<ListRevocationsResponse>, Status> {
        let since_version = request.into_inner().since_version;
        let list = list(&self.shared, since_version, "grpc")
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListRevocationsResponse {
            revocations: list
                .revocations
                .into_iter()
                .map(|r| ProtoRevocation {
                    issuer: r.issuer,
                    jti: r.jti,
                    expires_at: r.expires_at,
                    version: r.version,
                })
                .collect(),
            version: list.version,
            full: list.full,
        }))
    }
}
