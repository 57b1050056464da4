//! Who may use the revocation API, on both transports: a bearer token (`Authorization: Bearer
//! <token>`; on gRPC the `authorization` metadata) for writes (HTTP `POST /revocations`, gRPC
//! `Revoke`), and for HTTP `GET /revocations` unless reads are public. gRPC `ListRevocations`
//! is not checked: Envoy's jwt_auth filter polls it without credentials. With no token
//! configured, writes are refused (HTTP 403 `revocation_api_disabled`, gRPC
//! `PERMISSION_DENIED`), never open.
//!
//! Only the SHA-256 of the configured token is kept. A presented credential is hashed and the two
//! digests compared in constant time (`subtle`), so neither the comparison nor the token's
//! length shows in the timing. Refusals are logged with the transport, the peer and the reason,
//! never with the credential, and counted in `ratelimit_revocation_requests_refused_total`.

use super::Shared;
use crate::metrics::Metrics;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

/// Shortest token accepted: 16 characters (e.g. `openssl rand -hex 32` gives 64).
pub const MIN_TOKEN_LEN: usize = 16;

/// Access to the revocation API (HTTP and gRPC writes, HTTP reads). The default is no token:
/// writes refused, HTTP reads refused (not public).
#[derive(Clone, Default)]
pub struct RevocationAccess {
    /// SHA-256 of the token; `None`: no token configured.
    token_digest: Option<[u8; 32]>,
    read_public: bool,
}

impl fmt::Debug for RevocationAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationAccess")
            .field(
                "token",
                &if self.token_digest.is_some() {
                    "<configured>"
                } else {
                    "<none>"
                },
            )
            .field("read_public", &self.read_public)
            .finish()
    }
}

/// Why a configured token is unusable (the caller names where it came from).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token is {len} characters; it must be at least {MIN_TOKEN_LEN}")]
    TooShort { len: usize },
    #[error(
        "the token must be printable ASCII without spaces (it is sent as `Authorization: Bearer <token>`)"
    )]
    NotPrintable,
}

/// `token` without surrounding whitespace (e.g. a file's final newline), if it is usable: the
/// server keeps its digest, the `revoke` CLI sends it.
pub fn validate_token(token: &str) -> Result<&str, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotPrintable);
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort { len: token.len() });
    }
    Ok(token)
}

impl RevocationAccess {
    /// No token: writes and reads refused (reads can still be made public).
    pub fn disabled() -> Self {
        RevocationAccess::default()
    }

    /// Requires `token` (surrounding whitespace, e.g. a file's final newline, is ignored).
    pub fn with_token(token: &str) -> Result<Self, TokenError> {
        let token = validate_token(token)?;
        Ok(RevocationAccess {
            token_digest: Some(digest(token.as_bytes())),
            read_public: false,
        })
    }

    /// Serve `GET /revocations` without the token.
    pub fn with_public_reads(self, read_public: bool) -> Self {
        RevocationAccess {
            read_public,
            ..self
        }
    }

    pub fn token_configured(&self) -> bool {
        self.token_digest.is_some()
    }

    pub fn reads_public(&self) -> bool {
        self.read_public
    }

    /// Whether an HTTP request with these headers may write (`write`) or read the revocations.
    pub fn check(&self, headers: &HeaderMap, write: bool) -> Result<(), Refusal> {
        let values = headers.get_all(header::AUTHORIZATION);
        self.check_authorization(values.iter().map(HeaderValue::as_bytes), write)
    }

    /// The same for a gRPC call's metadata (its `authorization` entries).
    pub fn check_metadata(&self, metadata: &MetadataMap, write: bool) -> Result<(), Refusal> {
        let values = metadata.get_all(header::AUTHORIZATION.as_str());
        self.check_authorization(values.iter().map(|value| value.as_encoded_bytes()), write)
    }

    /// The one check of both transports, on the values of the request's `authorization`
    /// headers (HTTP) or metadata entries (gRPC, where they are HTTP/2 headers too).
    fn check_authorization<'a>(
        &self,
        authorization: impl Iterator<Item = &'a [u8]>,
        write: bool,
    ) -> Result<(), Refusal> {
        if !write && self.read_public {
            return Ok(());
        }
        let Some(expected) = &self.token_digest else {
            return Err(Refusal::Disabled);
        };
        let presented = bearer(authorization)?;
        if bool::from(digest(presented).ct_eq(expected)) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The credential of the one `Authorization: Bearer <credential>` value.
fn bearer<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Result<&'a [u8], Refusal> {
    let value = match (values.next(), values.next()) {
        (Some(value), None) => value,
        (None, _) => return Err(Refusal::Missing),
        (Some(_), Some(_)) => return Err(Refusal::Malformed),
    };
    let split = value
        .iter()
        .position(|b| *b == b' ')
        .ok_or(Refusal::Malformed)?;
    let (scheme, rest) = value.split_at(split);
    let credential = rest.trim_ascii_start();
    if !scheme.eq_ignore_ascii_case(b"bearer") || credential.is_empty() {
        return Err(Refusal::Malformed);
    }
    Ok(credential)
}

/// Why a request was refused. None of them carries the presented credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token configured: nothing can authorize the request.
    Disabled,
    /// No `Authorization` header.
    Missing,
    /// Not exactly one `Authorization: Bearer <credential>` header.
    Malformed,
    /// A bearer credential that is not the token.
    Wrong,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::Disabled,
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::Wrong,
    ];

    /// A fixed text for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Disabled => "no revocation token is configured",
            Refusal::Missing => "no Authorization header",
            Refusal::Malformed => "Authorization is not one `Bearer <token>` header",
            Refusal::Wrong => "wrong bearer token",
        }
    }

    /// The `reason` label of `ratelimit_revocation_requests_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Wrong => "wrong",
        }
    }
}

/// Where a refused request came in (the `transport` label and log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Grpc,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Http, Transport::Grpc];

    pub fn label(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Grpc => "grpc",
        }
    }
}

/// Creates every (transport, reason) series of the refusal counter at 0, so that the first
/// refusal is an increase a rule can see.
pub(super) fn register_refusal_series(metrics: &Metrics) {
    for transport in Transport::ALL {
        for refusal in Refusal::ALL {
            metrics.revocation_refusals_init(transport.label(), refusal.label());
        }
    }
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// 403 `revocation_api_disabled` without a configured token; otherwise 401 `unauthorized` with
/// a `WWW-Authenticate: Bearer` challenge (RFC 6750).
pub fn refusal_response(refusal: Refusal) -> Response {
    if refusal == Refusal::Disabled {
        let body = ErrorBody {
            error: "revocation_api_disabled",
            message: "the HTTP revocation API is disabled: no credential is configured \
                      (--revocation-token-file or RLS_REVOCATION_TOKEN)"
                .into(),
        };
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let challenge = match refusal {
        Refusal::Wrong => r#"Bearer realm="ratelimit-service", error="invalid_token""#,
        Refusal::Malformed => r#"Bearer realm="ratelimit-service", error="invalid_request""#,
        Refusal::Missing | Refusal::Disabled => r#"Bearer realm="ratelimit-service""#,
    };
    let body = ErrorBody {
        error: "unauthorized",
        message: format!(
            "{}: /revocations needs `Authorization: Bearer <token>` with the service's \
             revocation token",
            refusal.reason()
        ),
    };
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// `PERMISSION_DENIED` (`revocation_api_disabled`, the HTTP 403) without a configured token: no
/// credential can succeed, so the caller must not be told to send one. Otherwise
/// `UNAUTHENTICATED` (the HTTP 401). Neither message holds the presented credential.
pub fn refusal_status(refusal: Refusal) -> tonic::Status {
    match refusal {
        Refusal::Disabled => tonic::Status::permission_denied(
            "revocation_api_disabled: no revocation token is configured on the service \
             (--revocation-token-file or RLS_REVOCATION_TOKEN), so Revoke is refused",
        ),
        Refusal::Missing | Refusal::Malformed | Refusal::Wrong => {
            tonic::Status::unauthenticated(format!(
                "{}: Revoke needs `authorization: Bearer <token>` metadata with the service's \
                 revocation token",
                refusal.reason()
            ))
        }
    }
}

/// A refused request: a warn line with the transport, the peer, the method, the path and the
/// reason (never a header or metadata value), and the refusal counter.
pub fn record_refusal(
    metrics: &Metrics,
    transport: Transport,
    peer: Option<SocketAddr>,
    method: &str,
    path: &str,
    refusal: Refusal,
) {
    metrics.revocation_refused(transport.label(), refusal.label());
    let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    tracing::warn!(
        transport = transport.label(),
        %peer,
        method,
        path,
        reason = refusal.reason(),
        "revocation API request refused"
    );
}

/// Middleware on `/revocations`: checks the credential before the body is read.
pub(super) async fn require(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let write = !matches!(*request.method(), Method::GET | Method::HEAD);
    match shared.access.check(request.headers(), write) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0);
            let (method, path) = (request.method().as_str(), request.uri().path());
            record_refusal(
                &shared.metrics,
                Transport::Http,
                peer,
                method,
                path,
                refusal,
            );
            refusal_response(refusal)
        }
    }
}

/// The gRPC counterpart of [`require`], called first by a write method (`path` is its gRPC
/// path). tonic has decoded the message by then; the service caps messages at
/// `MAX_REVOCATION_MESSAGE`, as HTTP caps the body it reads after the check.
pub(super) fn require_grpc<T>(
    shared: &Shared,
    request: &tonic::Request<T>,
    path: &str,
) -> Result<(), tonic::Status> {
    shared
        .access
        .check_metadata(request.metadata(), true)
        .map_err(|refusal| {
            let peer = request.remote_addr();
            record_refusal(
                &shared.metrics,
                Transport::Grpc,
                peer,
                "POST",
                path,
                refusal,
            );
            refusal_status(refusal)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn tokens_are_checked_when_configured() {
        assert_eq!(
            RevocationAccess::with_token("").unwrap_err(),
            TokenError::Empty
        );
        assert_eq!(
            RevocationAccess::with_token(" \n").unwrap_err(),
            TokenError::Empty
        );
        assert_eq!(
            RevocationAccess::with_token("short").unwrap_err(),
            TokenError::TooShort { len: 5 }
        );
        assert_eq!(
            RevocationAccess::with_token("0123456789 abcdef").unwrap_err(),
            TokenError::NotPrintable
        );
        assert_eq!(
            RevocationAccess::with_token("0123456789abcdéf").unwrap_err(),
            TokenError::NotPrintable
        );
        let access = RevocationAccess::with_token(&format!("{TOKEN}\n")).unwrap();
        assert!(access.token_configured());
        assert_eq!(
            access.check(&headers(&[&format!("Bearer {TOKEN}")]), true),
            Ok(())
        );
    }

    #[test]
    fn only_one_bearer_header_with_the_token_passes() {
        let access = RevocationAccess::with_token(TOKEN).unwrap();
        let check = |values: &[&str]| access.check(&headers(values), true);
        assert_eq!(check(&[&format!("Bearer {TOKEN}")]), Ok(()));
        assert_eq!(check(&[&format!("bearer  {TOKEN}")]), Ok(()));
        assert_eq!(check(&[]), Err(Refusal::Missing));
        assert_eq!(check(&["Bearer"]), Err(Refusal::Malformed));
        assert_eq!(check(&["Bearer "]), Err(Refusal::Malformed));
        assert_eq!(check(&[&format!("Basic {TOKEN}")]), Err(Refusal::Malformed));
        assert_eq!(check(&[TOKEN]), Err(Refusal::Malformed));
        let twice = format!("Bearer {TOKEN}");
        assert_eq!(check(&[&twice, &twice]), Err(Refusal::Malformed));
        assert_eq!(check(&["Bearer wrong"]), Err(Refusal::Wrong));
        assert_eq!(
            check(&[&format!("Bearer {}", &TOKEN[..15])]),
            Err(Refusal::Wrong)
        );
        assert_eq!(check(&[&format!("Bearer {TOKEN}x")]), Err(Refusal::Wrong));
        assert_eq!(check(&[&format!("Bearer {TOKEN} x")]), Err(Refusal::Wrong));
    }

    #[test]
    fn reads_follow_the_token_unless_public_and_writes_always_do() {
        let access = RevocationAccess::with_token(TOKEN).unwrap();
        assert_eq!(access.check(&headers(&[]), false), Err(Refusal::Missing));
        let public = access.with_public_reads(true);
        assert_eq!(public.check(&headers(&[]), false), Ok(()));
        assert_eq!(public.check(&headers(&[]), true), Err(Refusal::Missing));
        let disabled = RevocationAccess::disabled();
        let good = headers(&[&format!("Bearer {TOKEN}")]);
        assert_eq!(disabled.check(&good, true), Err(Refusal::Disabled));
        assert_eq!(disabled.check(&good, false), Err(Refusal::Disabled));
        assert_eq!(
            disabled.with_public_reads(true).check(&headers(&[]), false),
            Ok(())
        );
    }

    fn metadata(values: &[&str]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for v in values {
            map.append("authorization", v.parse().unwrap());
        }
        map
    }

    /// gRPC metadata goes through the same check as HTTP headers.
    #[test]
    fn grpc_metadata_is_checked_like_http_headers() {
        let access = RevocationAccess::with_token(TOKEN).unwrap();
        let check = |values: &[&str]| access.check_metadata(&metadata(values), true);
        assert_eq!(check(&[&format!("Bearer {TOKEN}")]), Ok(()));
        assert_eq!(check(&[&format!("bearer {TOKEN}")]), Ok(()));
        assert_eq!(check(&[]), Err(Refusal::Missing));
        assert_eq!(check(&[TOKEN]), Err(Refusal::Malformed));
        let twice = format!("Bearer {TOKEN}");
        assert_eq!(check(&[&twice, &twice]), Err(Refusal::Malformed));
        assert_eq!(check(&["Bearer wrong"]), Err(Refusal::Wrong));
        let mut elsewhere = MetadataMap::new();
        elsewhere.insert("x-api-key", TOKEN.parse().unwrap());
        assert_eq!(
            access.check_metadata(&elsewhere, true),
            Err(Refusal::Missing)
        );
        let disabled = RevocationAccess::disabled().with_public_reads(true);
        assert_eq!(
            disabled.check_metadata(&metadata(&[&twice]), true),
            Err(Refusal::Disabled)
        );
    }

    #[test]
    fn grpc_refusals_are_unauthenticated_or_permission_denied_when_disabled() {
        for refusal in Refusal::ALL {
            let status = refusal_status(refusal);
            let expected = if refusal == Refusal::Disabled {
                tonic::Code::PermissionDenied
            } else {
                tonic::Code::Unauthenticated
            };
            assert_eq!(status.code(), expected, "{refusal:?}");
            if refusal == Refusal::Disabled {
                assert!(status.message().starts_with("revocation_api_disabled: "));
            } else {
                assert!(status.message().starts_with(refusal.reason()), "{status:?}");
            }
        }
        let labels: Vec<&str> = Refusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels, ["disabled", "missing", "malformed", "wrong"]);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let access = RevocationAccess::with_token(TOKEN).unwrap();
        let shown = format!("{access:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("<configured>"), "{shown}");
    }
}
