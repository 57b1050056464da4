//! Rate-limit decisions over gRPC (memory store): statuses and headers, bad requests, and
//! hot reloads.

use crate::prelude::*;

#[tokio::test]
async fn answers_envoy_requests_with_statuses_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(Settings {
        ratelimit_headers: true,
        ..memory_settings(dir.path())
    })
    .await;
    let mut client = service.client().await;
    let req = request("test", &[&[("user", "a")], &[("other", "x")]]);
    let first = call(&mut client, req.clone()).await.unwrap();
    assert_eq!(first.overall_code, Code::Ok as i32);
    assert_eq!(first.statuses.len(), 2);
    let limited = &first.statuses[0];
    assert_eq!(limited.limit_remaining, 1);
    let limit = limited.current_limit.as_ref().unwrap();
    assert_eq!((limit.requests_per_unit, limit.unit), (2, 3 /* HOUR */));
    assert_eq!(limited.duration_until_reset.unwrap().seconds, 1800);
    assert!(first.statuses[1].current_limit.is_none());
    let headers: Vec<(String, String)> = first
        .response_headers_to_add
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    assert_eq!(
        headers,
        [
            ("ratelimit-limit".to_string(), "2".to_string()),
            ("ratelimit-remaining".to_string(), "1".to_string()),
            ("ratelimit-reset".to_string(), "1800".to_string()),
        ]
    );
    call(&mut client, req.clone()).await.unwrap();
    let over = call(&mut client, req).await.unwrap();
    assert_eq!(over.overall_code, Code::OverLimit as i32);
    let retry_after = over
        .response_headers_to_add
        .iter()
        .find(|h| h.key == "retry-after")
        .unwrap();
    assert_eq!(retry_after.value, "1800");
    // Unknown domain: OK for everything.
    let other = call(&mut client, request("nope", &[&[("user", "a")]]))
        .await
        .unwrap();
    assert_eq!(other.overall_code, Code::Ok as i32);

    let (status, body) = service.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"ratelimit_hits_total{domain="test",descriptor="user"} 3"#),
        "{body}"
    );
    assert!(body.contains(r#"ratelimit_over_limit_total{domain="test",descriptor="user"} 1"#));
    assert!(body.contains(r#"ratelimit_local_cache_hits_total{domain="test",descriptor="user"} 1"#));
    assert_eq!(service.get("/healthz").await.0, 200);
    assert_eq!(service.get("/ready").await.0, 200);

    let channel = Channel::from_shared(format!("http://{}", service.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
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
async fn bad_requests_are_invalid_argument_and_huge_hits_are_decided() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(memory_settings(dir.path())).await;
    let mut client = service.client().await;
    let invalid = |r: Result<RateLimitResponse, tonic::Status>| {
        let status = r.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        status.message().to_owned()
    };
    assert_eq!(
        invalid(call(&mut client, request("", &[&[("user", "a")]])).await),
        "rate limit domain must not be empty"
    );
    assert_eq!(
        invalid(call(&mut client, request("test", &[])).await),
        "rate limit descriptor list must not be empty"
    );
    let one: &[(&str, &str)] = &[("user", "a")];
    let many = vec![one; 1000];
    assert_eq!(
        invalid(call(&mut client, request("test", &many)).await),
        "1000 descriptors exceed the maximum of 256"
    );
    let big = "v".repeat(64 * 1024);
    let msg = invalid(call(&mut client, request("test", &[&[("user", big.as_str())]])).await);
    assert!(msg.contains("over the maximum of 65536"), "{msg}");

    let mut huge = request("test", &[&[("user", "h")]]);
    huge.descriptors[0].hits_addend = Some(u64::MAX);
    let reply = call(&mut client, huge).await.unwrap();
    assert_eq!(reply.overall_code, Code::OverLimit as i32);
    let mut huge = request("test", &[&[("user", "h")]]);
    huge.hits_addend = u32::MAX;
    let reply = call(&mut client, huge).await.unwrap();
    assert_eq!(reply.overall_code, Code::OverLimit as i32);
    let ok = call(&mut client, request("test", &[&[("user", "h")]]))
        .await
        .unwrap();
    assert_eq!(
        ok.statuses[0].limit_remaining, 1,
        "huge requests charged nothing"
    );
    service.shutdown().await;
}

#[tokio::test]
async fn hot_reload_swaps_valid_configs_and_keeps_serving_on_invalid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(memory_settings(dir.path())).await;
    let mut client = service.client().await;
    let limit_of = |r: RateLimitResponse| {
        r.statuses[0]
            .current_limit
            .as_ref()
            .map(|l| l.requests_per_unit)
    };
    let probe = request("test", &[&[("user", "reload")]]);
    assert_eq!(
        limit_of(call(&mut client, probe.clone()).await.unwrap()),
        Some(2)
    );

    write_config(
        dir.path(),
        &CONFIG.replace("requests_per_unit: 2", "requests_per_unit: 7"),
    );
    eventually("the new limit to apply", Duration::from_secs(10), || {
        let mut client = client.clone();
        let probe = probe.clone();
        async move { (limit_of(call(&mut client, probe).await.ok()?) == Some(7)).then_some(()) }
    })
    .await;

    write_config(dir.path(), "domain: test\ndescriptors:\n  - key: user\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n");
    eventually(
        "the failed reload to be counted",
        Duration::from_secs(10),
        || async {
            let (_, body) = service.get("/metrics").await;
            body.contains(r#"ratelimit_config_reloads_total{result="failure"} 1"#)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        limit_of(call(&mut client, probe).await.unwrap()),
        Some(7),
        "old config serves"
    );
    service.shutdown().await;
}
