//! HTTP: writes and reads need the bearer token (or are disabled without one), public reads,
//! and refusals counted by reason.

use super::*;

/// Nobody configured a credential: writes (and, not being public, reads) are refused with a
/// JSON body saying why; the service still runs and its probes answer.
#[tokio::test]
async fn without_a_configured_credential_writes_are_refused_and_probes_answer() {
    let service = Service::start(RevocationAccess::disabled()).await;
    for auth in [&[][..], &[bearer(TOKEN).as_str()][..]] {
        let post = service
            .send("POST", "/revocations", auth, &revoke_body("dos"))
            .await;
        assert_eq!(post.status, 403, "{post:?}");
        assert_eq!(post.json()["error"], "revocation_api_disabled", "{post:?}");
        let message = post.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("no credential is configured"), "{message}");
        let get = service.send("GET", "/revocations", auth, "").await;
        assert_eq!(get.status, 403, "{get:?}");
        assert_eq!(get.json()["error"], "revocation_api_disabled", "{get:?}");
    }
    for probe in ["/healthz", "/ready", "/metrics"] {
        let reply = service.send("GET", probe, &[], "").await;
        assert_eq!(reply.status, 200, "{probe}: {reply:?}");
    }
    assert_eq!(service.added().await, 0, "nothing was revoked");
    service.shutdown().await;
}

/// POST and GET: no credential 401, a wrong one 401, the token 200; refusals change nothing.
#[tokio::test]
async fn writes_and_reads_need_the_bearer_token() {
    let service = Service::start(RevocationAccess::with_token(TOKEN).unwrap()).await;
    let wrong = [
        ("no credential", vec![]),
        (
            "a wrong token of the same length",
            vec![bearer(WRONG_SAME_LENGTH)],
        ),
        ("a prefix of the token", vec![bearer(&TOKEN[..20])]),
        ("the token and more", vec![bearer(&format!("{TOKEN}0"))]),
        (
            "another scheme",
            vec![format!("Authorization: Basic {TOKEN}")],
        ),
        ("the bare token", vec![format!("Authorization: {TOKEN}")]),
        ("the token twice", vec![bearer(TOKEN), bearer(TOKEN)]),
        ("the token elsewhere", vec![format!("X-Api-Key: {TOKEN}")]),
    ];
    for (what, headers) in &wrong {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        service
            .send("POST", "/revocations", &headers, &revoke_body("dos"))
            .await
            .assert_unauthorized(&format!("POST with {what}"));
        service
            .send("GET", "/revocations", &headers, "")
            .await
            .assert_unauthorized(&format!("GET with {what}"));
    }
    let missing = service.send("POST", "/revocations", &[], "").await;
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="ratelimit-service""#)
    );
    let wrong = service
        .send("GET", "/revocations", &[&bearer(WRONG_SAME_LENGTH)], "")
        .await;
    assert_eq!(
        wrong.header("www-authenticate"),
        Some(r#"Bearer realm="ratelimit-service", error="invalid_token""#)
    );
    assert_eq!(service.added().await, 0, "no refused write got through");

    let post = service
        .send(
            "POST",
            "/revocations",
            &[&bearer(TOKEN)],
            &revoke_body("ok"),
        )
        .await;
    assert_eq!(post.status, 200, "{post:?}");
    assert!(post.json()["version"].as_u64().unwrap() > 0);
    // The scheme is case-insensitive (RFC 7235).
    let lower = format!("authorization: bearer {TOKEN}");
    let get = service.send("GET", "/revocations", &[&lower], "").await;
    assert_eq!(get.status, 200, "{get:?}");
    assert_eq!(get.json()["revocations"][0]["jti"], "ok", "{get:?}");
    assert_eq!(get.json()["revocations"].as_array().unwrap().len(), 1);
    // Unrouted methods stay 405; the probes stay open.
    let put = service.send("PUT", "/revocations", &[], "").await;
    assert_eq!(put.status, 405, "{put:?}");
    for probe in ["/healthz", "/ready", "/metrics"] {
        assert_eq!(
            service.send("GET", probe, &[], "").await.status,
            200,
            "{probe}"
        );
    }
    assert_eq!(service.added().await, 1);
    service.shutdown().await;
}

#[tokio::test]
async fn public_reads_leave_writes_behind_the_token() {
    let access = RevocationAccess::with_token(TOKEN)
        .unwrap()
        .with_public_reads(true);
    let service = Service::start(access).await;
    service
        .send("POST", "/revocations", &[], &revoke_body("dos"))
        .await
        .assert_unauthorized("POST without a credential");
    service
        .send(
            "POST",
            "/revocations",
            &[&bearer(WRONG_SAME_LENGTH)],
            &revoke_body("dos"),
        )
        .await
        .assert_unauthorized("POST with a wrong token");
    let post = service
        .send(
            "POST",
            "/revocations",
            &[&bearer(TOKEN)],
            &revoke_body("ok"),
        )
        .await;
    assert_eq!(post.status, 200, "{post:?}");
    let get = service.send("GET", "/revocations?since=0", &[], "").await;
    assert_eq!(get.status, 200, "{get:?}");
    assert_eq!(get.json()["revocations"].as_array().unwrap().len(), 1);

    // Public reads with no token at all: reads answer, writes stay disabled.
    let service_without =
        Service::start(RevocationAccess::disabled().with_public_reads(true)).await;
    let get = service_without.send("GET", "/revocations", &[], "").await;
    assert_eq!(get.status, 200, "{get:?}");
    let post = service_without
        .send(
            "POST",
            "/revocations",
            &[&bearer(TOKEN)],
            &revoke_body("dos"),
        )
        .await;
    assert_eq!(post.status, 403, "{post:?}");
    service.shutdown().await;
    service_without.shutdown().await;
}

/// Refused HTTP requests are counted by reason under `transport="http"`; every series of
/// both transports is exposed from the start (at 0), so alerts see the first refusal.
#[tokio::test]
async fn refused_requests_are_counted_by_transport_and_reason() {
    let service = Service::start(RevocationAccess::with_token(TOKEN).unwrap()).await;
    for transport in ["http", "grpc"] {
        for reason in REASONS {
            assert_eq!(service.refused(transport, reason).await, 0);
        }
    }
    let body = revoke_body("dos");
    service.send("POST", "/revocations", &[], &body).await;
    service.send("GET", "/revocations", &[], "").await;
    let wrong = bearer(WRONG_SAME_LENGTH);
    service.send("POST", "/revocations", &[&wrong], &body).await;
    let basic = format!("Authorization: Basic {TOKEN}");
    service.send("POST", "/revocations", &[&basic], &body).await;
    let ok = service
        .send("POST", "/revocations", &[&bearer(TOKEN)], &body)
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(service.refused("http", "missing").await, 2);
    assert_eq!(service.refused("http", "wrong").await, 1);
    assert_eq!(service.refused("http", "malformed").await, 1);
    assert_eq!(service.refused("http", "disabled").await, 0);
    assert_eq!(service.refused("grpc", "missing").await, 0);

    let disabled = Service::start(RevocationAccess::disabled()).await;
    disabled.send("POST", "/revocations", &[], &body).await;
    assert_eq!(disabled.refused("http", "disabled").await, 1);
    service.shutdown().await;
    disabled.shutdown().await;
}
