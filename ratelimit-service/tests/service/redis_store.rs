//! The Redis store: failing fast while Redis is down, two instances sharing one Redis, and a
//! Redis Cluster.

use crate::prelude::*;

#[tokio::test]
async fn redis_down_fails_fast_with_unavailable_and_recovers() {
    let mut redis = redis_fixture::RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG);
    let service = Service::start(Settings {
        redis_timeout: Duration::from_millis(20),
        ..Settings::new(path, StoreSettings::Redis { url: redis.url() })
    })
    .await;
    let mut client = service.client().await;
    let req = request("test", &[&[("user", "r")]]);
    assert_eq!(
        call(&mut client, req.clone()).await.unwrap().overall_code,
        Code::Ok as i32
    );
    assert_eq!(service.get("/ready").await.0, 200);

    redis.stop();
    for _ in 0..5 {
        let started = Instant::now();
        let status = call(&mut client, req.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(service.get("/ready").await.0, 503);

    redis.start_again().unwrap();
    eventually(
        "calls to succeed after Redis restarts",
        Duration::from_secs(10),
        || {
            let mut client = client.clone();
            let req = req.clone();
            async move { call(&mut client, req).await.ok() }
        },
    )
    .await;
    assert_eq!(service.get("/ready").await.0, 200);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_admit_exactly_capacity_plus_refill() {
    let redis = redis_fixture::RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG);
    let settings = Settings {
        redis_timeout: Duration::from_secs(1),
        ..Settings::new(path, StoreSettings::Redis { url: redis.url() })
    };
    let a = Service::start(settings.clone()).await;
    let b = Service::start(settings).await;
    let clients = [a.client().await, b.client().await];
    let admitted = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_millis(1500);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut client = clients[i % 2].clone();
        let admitted = Arc::clone(&admitted);
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < run_for {
                let reply = call(&mut client, request("test", &[&[("hot", "key")]]))
                    .await
                    .unwrap();
                if reply.overall_code == Code::Ok as i32 {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    // burst 20, 100 per second. Never more than capacity + refill; and with 64 callers
    // hammering, every token is taken soon after it is due (the slack covers connection
    // warm-up before the first call and the calls in flight at the end, in a debug build).
    let ceiling = 20.0 + 100.0 * elapsed;
    let floor = 20.0 + 100.0 * (elapsed - 0.25);
    eprintln!("admitted {admitted} in {elapsed:.3} s (ceiling {ceiling:.1}, floor {floor:.1})");
    assert!(
        admitted <= ceiling.floor(),
        "admitted {admitted} > {ceiling}"
    );
    assert!(admitted >= floor, "admitted {admitted} < {floor}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn cluster_calls_with_several_descriptors() {
    let cluster = redis_fixture::RedisCluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG);
    let service = Service::start(Settings {
        redis_timeout: Duration::from_secs(1),
        ..Settings::new(path, StoreSettings::Redis { url: cluster.url() })
    })
    .await;
    let mut client = service.client().await;
    let req = request(
        "test",
        &[&[("user", "c1")], &[("user", "c2")], &[("hot", "c3")]],
    );
    for remaining in [1, 0] {
        let reply = call(&mut client, req.clone()).await.unwrap();
        assert_eq!(reply.overall_code, Code::Ok as i32);
        assert_eq!(reply.statuses[0].limit_remaining, remaining);
        assert_eq!(reply.statuses[1].limit_remaining, remaining);
    }
    let reply = call(&mut client, req).await.unwrap();
    assert_eq!(reply.overall_code, Code::OverLimit as i32);
    service.shutdown().await;
}

/// envoyproxy/ratelimit's `share_threshold` and MERGE_DOMAIN_CONFIG on real Redis: one domain
/// from two files (`--merge-domain-config`); every value a shared wildcard matches charges the
/// one bucket keyed by the pattern, while a plain wildcard counts each value apart.
#[tokio::test]
async fn share_threshold_values_share_one_redis_bucket_across_merged_files() {
    let redis = redis_fixture::RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shared = "domain: files\ndescriptors:\n  - key: path\n    value: /api/*\n    share_threshold: true\n    rate_limit: { unit: hour, requests_per_unit: 2 }\n";
    let apart = "domain: files\ndescriptors:\n  - key: user\n    value: u*\n    rate_limit: { unit: hour, requests_per_unit: 2 }\n";
    std::fs::write(dir.path().join("a.yaml"), shared).unwrap();
    std::fs::write(dir.path().join("b.yaml"), apart).unwrap();
    let mut settings = Settings::new(dir.path(), StoreSettings::Redis { url: redis.url() });
    settings.redis_timeout = Duration::from_secs(1);
    settings.load_options.merge_domains = true;
    let service = Service::start(settings).await;
    let mut client = service.client().await;
    let code = |reply: RateLimitResponse| reply.overall_code;
    for value in ["/api/a", "/api/b"] {
        let reply = call(&mut client, request("files", &[&[("path", value)]])).await;
        assert_eq!(code(reply.unwrap()), Code::Ok as i32, "{value}");
    }
    let third = call(&mut client, request("files", &[&[("path", "/api/c")]])).await;
    assert_eq!(code(third.unwrap()), Code::OverLimit as i32);
    for value in ["u1", "u1", "u2", "u2"] {
        let reply = call(&mut client, request("files", &[&[("user", value)]])).await;
        assert_eq!(code(reply.unwrap()), Code::Ok as i32, "{value}");
    }
    let keys = redis.command("KEYS rl:*").unwrap();
    assert!(keys.contains("rl:{files}:t3600:path=/api/*"), "{keys}");
    assert!(!keys.contains("path=/api/a"), "{keys}");
    assert!(
        keys.contains("user=u1") && keys.contains("user=u2"),
        "{keys}"
    );
    let (_, metrics) = service.get("/metrics").await;
    let hits = r#"ratelimit_hits_total{domain="files",descriptor="path_/api/*"} 3"#;
    assert!(metrics.contains(hits), "{metrics}");
    service.shutdown().await;
}
