//! gRPC: Revoke needs the bearer token (and is refused when none is configured);
//! ListRevocations stays open.

use super::*;

/// The attack: anyone who reaches the gRPC port (Envoy's network, the whole mesh) calls
/// Revoke. Every credential but the token is UNAUTHENTICATED and changes nothing; the token
/// revokes; ListRevocations answers without any credential (jwt_auth polls it so).
#[tokio::test]
async fn grpc_revoke_needs_the_bearer_token_and_list_stays_open() {
    let service = Service::start(RevocationAccess::with_token(TOKEN).unwrap()).await;
    let mut client = service.grpc().await;
    // (what, metadata entries, the refusal's reason label)
    let wrong: Vec<(&str, Metadata, &str)> = vec![
        ("no credential", vec![], "missing"),
        (
            "a wrong token of the same length",
            vec![grpc_bearer(WRONG_SAME_LENGTH)],
            "wrong",
        ),
        (
            "a prefix of the token",
            vec![grpc_bearer(&TOKEN[..20])],
            "wrong",
        ),
        (
            "the token and more",
            vec![grpc_bearer(&format!("{TOKEN}0"))],
            "wrong",
        ),
        (
            "another scheme",
            vec![("authorization", format!("Basic {TOKEN}"))],
            "malformed",
        ),
        (
            "the bare token",
            vec![("authorization", TOKEN.to_owned())],
            "malformed",
        ),
        (
            "the token twice",
            vec![grpc_bearer(TOKEN), grpc_bearer(TOKEN)],
            "malformed",
        ),
        (
            "the token elsewhere",
            vec![("x-api-key", TOKEN.to_owned())],
            "missing",
        ),
    ];
    for (what, metadata, _) in &wrong {
        let status = client
            .revoke(with_metadata(revoke_message("dos"), metadata))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{what}: {status:?}"
        );
        assert!(
            status
                .message()
                .contains("Revoke needs `authorization: Bearer <token>` metadata"),
            "{what}: {status:?}"
        );
        assert!(!status.message().contains(TOKEN), "{what}: {status:?}");
    }
    assert_eq!(service.added().await, 0, "no refused Revoke got through");
    // What tonic decodes before the check is capped (16 KiB, as HTTP's body).
    let huge = revoke_message(&"x".repeat(20 * 1024));
    let status = client.revoke(huge).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    for reason in REASONS {
        let expected = wrong.iter().filter(|(_, _, r)| *r == reason).count();
        assert_eq!(
            service.refused("grpc", reason).await,
            expected as u64,
            "{reason}"
        );
        assert_eq!(service.refused("http", reason).await, 0, "{reason}");
    }

    let version = client
        .revoke(with_metadata(revoke_message("ok"), &[grpc_bearer(TOKEN)]))
        .await
        .unwrap()
        .into_inner()
        .version;
    assert!(version > 0);
    // The scheme is case-insensitive, as over HTTP.
    let lower = ("authorization", format!("bearer {TOKEN}"));
    client
        .revoke(with_metadata(revoke_message("ok-lower"), &[lower]))
        .await
        .unwrap();
    assert_eq!(service.added().await, 2);

    // ListRevocations: no credential needed, and it sees exactly the authorized writes.
    let list = client
        .list_revocations(ListRevocationsRequest { since_version: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(list.full);
    let jtis: Vec<&str> = list.revocations.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(jtis, ["ok", "ok-lower"]);
    service.shutdown().await;
}

/// No token configured: Revoke is PERMISSION_DENIED (the HTTP 403
/// `revocation_api_disabled`) whatever the caller sends; ListRevocations still answers.
#[tokio::test]
async fn grpc_revoke_is_refused_when_no_token_is_configured() {
    let service = Service::start(RevocationAccess::disabled()).await;
    let mut client = service.grpc().await;
    for metadata in [vec![], vec![grpc_bearer(TOKEN)]] {
        let status = client
            .revoke(with_metadata(revoke_message("dos"), &metadata))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().starts_with("revocation_api_disabled: "),
            "{status:?}"
        );
        assert!(
            status
                .message()
                .contains("--revocation-token-file or RLS_REVOCATION_TOKEN"),
            "{status:?}"
        );
    }
    let list = client
        .list_revocations(ListRevocationsRequest { since_version: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(list.revocations.is_empty());
    assert_eq!(service.refused("grpc", "disabled").await, 2);
    assert_eq!(service.added().await, 0);
    service.shutdown().await;
}
