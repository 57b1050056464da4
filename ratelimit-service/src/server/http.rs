//! HTTP side port: `/healthz` (alive), `/ready` (config loaded and store reachable),
//! `/metrics` (Prometheus text), and the operator's revocation endpoints:
//! `POST /revocations` (`{"issuer","jti","expires_at"}` -> `{"version"}`) and
//! `GET /revocations?since=N` (the same answer as ListRevocations, as JSON).
//!
//! This is an operator port: it binds loopback by default. `/healthz`, `/ready` and `/metrics` are
//! open; `/revocations` needs the revocation token (see [`super::access`]): always for writes,
//! for reads unless they are public.

use super::access;
use super::{revocation, Shared};
use crate::revocation::{Revocation, RevocationError, RevokeRequest};
use crate::storage::Store;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest revocation request body: two 1 KiB fields, escaped, fit easily.
const MAX_REVOKE_BODY: usize = 16 * 1024;

pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/revocations",
            get(list_revocations)
                .post(revoke)
                .layer(DefaultBodyLimit::max(MAX_REVOKE_BODY))
                // Checked before the body is read; an unrouted method stays 405.
                .route_layer(middleware::from_fn_with_state(
                    Arc::clone(&shared),
                    access::require,
                )),
        )
        .with_state(shared);
    // The peer address, for the log line of a refused request.
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match shared.limiter.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {err}\n"),
        ),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

/// `{"error": <code>, "message": <what to do>}` with a matching status.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

fn error(status: StatusCode, error: &'static str, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error,
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

fn revocation_error(err: RevocationError) -> Response {
    match err {
        RevocationError::Invalid(message) => {
            error(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
        full @ RevocationError::Full { .. } => error(
            StatusCode::INSUFFICIENT_STORAGE,
            "store_full",
            full.to_string(),
        ),
        RevocationError::Store(store) if store.transient => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            store.to_string(),
        ),
        RevocationError::Store(store) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            store.to_string(),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    issuer: String,
    jti: String,
    expires_at: u64,
}

#[derive(Debug, Serialize)]
struct RevokeReply {
    version: u64,
}

/// The body is parsed here, not by axum's `Json`, so that every bad input (any content type,
/// broken JSON, a missing or unknown field) gets the JSON error shape.
async fn revoke(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                rejection.status(),
                "invalid_request",
                format!(
                    "cannot read the request body ({}); at most {MAX_REVOKE_BODY} bytes",
                    rejection.body_text()
                ),
            )
        }
    };
    let parsed: RevokeBody = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "request body must be JSON {{\"issuer\": string, \"jti\": string, \
                     \"expires_at\": Unix seconds}}: {err}"
                ),
            )
        }
    };
    let request = RevokeRequest {
        issuer: parsed.issuer,
        jti: parsed.jti,
        expires_at: parsed.expires_at,
    };
    match revocation::revoke(&shared, &request, "http").await {
        Ok(revoked) => Json(RevokeReply {
            version: revoked.version,
        })
        .into_response(),
        Err(err) => revocation_error(err),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    since: u64,
}

#[derive(Debug, Serialize)]
struct ListReply {
    revocations: Vec<Revocation>,
    version: u64,
    full: bool,
}

async fn list_revocations(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let since = match query {
        Ok(Query(query)) => query.since,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "the only query parameter is since=<version>: {}",
                    rejection.body_text()
                ),
            )
        }
    };
    match revocation::list(&shared, since, "http").await {
        Ok(list) => Json(ListReply {
            revocations: list.revocations,
            version: list.version,
            full: list.full,
        })
        .into_response(),
        Err(err) => revocation_error(err),
    }
}
