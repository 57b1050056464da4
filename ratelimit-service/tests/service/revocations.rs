//! The revocation API over gRPC and HTTP: listing, bad input, metrics, and a shared Redis store
//! that is flushed and stopped.

use crate::prelude::*;

#[tokio::test]
async fn revocations_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(memory_settings(dir.path())).await;
    let mut client = service.revocations().await;
    let until = unix_now() + 600;

    let v1 = client
        .revoke(revoke_request("https://idp", "a", until))
        .await
        .unwrap()
        .into_inner()
        .version;
    assert!(v1 > 0);
    let body = format!(r#"{{"issuer":"https://idp","jti":"b","expires_at":{until}}}"#);
    let (status, reply) = service.post_json("/revocations", &body).await;
    assert_eq!(status, 200, "{reply}");
    let v2 = reply["version"].as_u64().unwrap();
    assert!(v2 > v1);

    let full = list_since(&mut client, 0).await;
    assert!(full.full);
    assert_eq!(full.version, v2);
    assert_eq!(jtis(&full), ["a", "b"]);
    assert_eq!(full.revocations[0].issuer, "https://idp");
    assert_eq!(full.revocations[0].expires_at, until);
    assert_eq!(
        (full.revocations[0].version, full.revocations[1].version),
        (v1, v2)
    );
    let since = list_since(&mut client, v1).await;
    assert!(!since.full);
    assert_eq!(since.version, v2);
    assert_eq!(jtis(&since), ["b"]);
    assert!(list_since(&mut client, v2).await.revocations.is_empty());

    let (status, listed) = service.get_json(&format!("/revocations?since={v1}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        listed,
        serde_json::json!({
            "revocations": [{"issuer": "https://idp", "jti": "b", "expires_at": until, "version": v2}],
            "version": v2,
            "full": false,
        })
    );
    let (status, all) = service.get_json("/revocations").await;
    assert_eq!(status, 200);
    assert_eq!(all["full"], true);
    assert_eq!(all["revocations"].as_array().unwrap().len(), 2);

    // Bad input: INVALID_ARGUMENT over gRPC, 400 with a JSON error over HTTP.
    let status = client
        .revoke(revoke_request("https://idp", "", until))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "revocation jti must not be empty");
    let status = client
        .revoke(revoke_request("https://idp", "c", 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status
        .message()
        .starts_with("revocation expires_at 1 is not in the future"));
    let status = client
        .revoke(revoke_request(&"i".repeat(2000), "c", until))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "revocation issuer is 2000 bytes, over the maximum of 1024"
    );

    let (status, error) = service
        .post_json(
            "/revocations",
            &format!(r#"{{"issuer":"","jti":"c","expires_at":{until}}}"#),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        serde_json::json!({"error": "invalid_request", "message": "revocation issuer must not be empty"})
    );
    for (body, expected) in [
        ("{not json", "key must be a string"),
        (r#"{"issuer":"i","jti":"c"}"#, "missing field `expires_at`"),
        (
            r#"{"issuer":"i","jti":"c","expires_at":-5}"#,
            "invalid value: integer `-5`",
        ),
        (
            &format!(r#"{{"issuer":"i","jti":"c","expires_at":{until},"sub":"x"}}"#),
            "unknown field `sub`",
        ),
    ] {
        let (status, error) = service.post_json("/revocations", body).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"], "invalid_request");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("request body must be JSON"),
            "{message}"
        );
        assert!(message.contains(expected), "{message} lacks {expected}");
    }
    let huge = format!(
        r#"{{"issuer":"i","jti":"{}","expires_at":{until}}}"#,
        "x".repeat(20_000)
    );
    let (status, error) = service.post_json("/revocations", &huge).await;
    assert_eq!(status, 413, "{error}");
    assert_eq!(error["error"], "invalid_request");
    let (status, error) = service.get_json("/revocations?since=abc").await;
    assert_eq!(status, 400);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("the only query parameter is since=<version>"));
    assert_eq!(
        list_since(&mut client, 0).await.revocations.len(),
        2,
        "bad input changed nothing"
    );

    let (_, metrics) = service.get("/metrics").await;
    for line in [
        "ratelimit_revocations_added_total 2",
        r#"ratelimit_revocation_list_requests_total{kind="full"} 3"#,
        r#"ratelimit_revocation_list_requests_total{kind="incremental"} 3"#,
        "ratelimit_revocations_live 2",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }

    let channel = Channel::from_shared(format!("http://{}", service.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "edgegate.revocation.v1.RevocationService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    service.shutdown().await;
}

#[tokio::test]
async fn revocations_in_redis_are_shared_survive_a_flush_and_fail_fast_when_redis_is_down() {
    let mut redis = redis_fixture::RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG);
    let settings = Settings {
        revocation_access: revocation_access(),
        ..Settings::new(path, StoreSettings::Redis { url: redis.url() })
    };
    let a = Service::start(settings.clone()).await;
    let b = Service::start(settings).await;
    let (mut via_a, mut via_b) = (a.revocations().await, b.revocations().await);
    let until = unix_now() + 600;

    let v1 = via_a
        .revoke(revoke_request("https://idp", "shared", until))
        .await
        .unwrap()
        .into_inner()
        .version;
    let seen = list_since(&mut via_b, 0).await;
    assert_eq!(jtis(&seen), ["shared"], "one store behind both instances");
    assert_eq!(seen.version, v1);

    // Store reset: a caller with the old version is now ahead of the store -> full list.
    assert!(redis.command("FLUSHALL").unwrap().starts_with("+OK"));
    let after = list_since(&mut via_b, v1).await;
    assert!(after.full);
    assert!(after.revocations.is_empty());
    let (status, body) = b.get_json(&format!("/revocations?since={v1}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["full"], true);

    // New revocations after the reset still reach a caller that only knows v1.
    let v2 = via_a
        .revoke(revoke_request("https://idp", "after-reset", until))
        .await
        .unwrap()
        .into_inner()
        .version;
    assert!(v2 > v1);
    let since = list_since(&mut via_b, v1).await;
    assert!(!since.full);
    assert_eq!(jtis(&since), ["after-reset"]);

    redis.stop();
    let started = Instant::now();
    let status = via_a
        .list_revocations(ListRevocationsRequest { since_version: 0 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let (status, error) = a
        .post_json(
            "/revocations",
            &format!(r#"{{"issuer":"i","jti":"down","expires_at":{until}}}"#),
        )
        .await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["error"], "unavailable");

    redis.start_again().unwrap();
    let back = eventually(
        "revocations to work after Redis restarts",
        Duration::from_secs(10),
        || {
            let mut client = via_a.clone();
            async move {
                client
                    .revoke(revoke_request("https://idp", "back", unix_now() + 600))
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert!(back.into_inner().version > v2);
    a.shutdown().await;
    b.shutdown().await;
}
