//! The QuotaLease API end to end, in process: `run(...)` on port 0, a real tonic client, the
//! HTTP port's /metrics, hot reload, and two instances sharing a real Redis. Waits poll with a
//! deadline, never sleep blindly.
// Test crate: helpers outside #[test] fns may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry as RlsEntry;
use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use ratelimit_service::proto::lease::descriptor::Entry;
use ratelimit_service::proto::lease::quota_lease_client::QuotaLeaseClient;
use ratelimit_service::proto::lease::{
    Descriptor, LeaseMode, LeaseRequest, LeaseResponse, ReturnRequest,
};
use ratelimit_service::proto::rls::rate_limit_service_client::RateLimitServiceClient;
use ratelimit_service::proto::rls::RateLimitRequest;
use ratelimit_service::{Settings, Spawned, StoreSettings};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_harness::redis as redis_fixture;
use test_harness::wait::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

const CONFIG: &str = r#"
domain: test
descriptors:
  - key: route
    rate_limit: { unit: hour, requests_per_unit: 600, mode: leased, lease_size: 10, lease_ttl: 2s }
  - key: tenant
    value: tiny
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: hot
    rate_limit: { unit: second, requests_per_unit: 100, burst: 20, mode: leased, lease_size: 5, lease_ttl: 500ms }
  - key: health
    rate_limit: { unlimited: true }
"#;

struct Service {
    grpc: SocketAddr,
    http: SocketAddr,
    spawned: Spawned,
}

impl Service {
    async fn start(settings: Settings) -> Service {
        let spawned = Spawned::start(settings).await.unwrap();
        Service {
            grpc: spawned.grpc,
            http: spawned.http,
            spawned,
        }
    }

    async fn channel(&self) -> Channel {
        let url = format!("http://{}", self.grpc);
        eventually(
            "gRPC server accepts connections",
            Duration::from_secs(10),
            || {
                let url = url.clone();
                async move { Channel::from_shared(url).ok()?.connect().await.ok() }
            },
        )
        .await
    }

    async fn client(&self) -> QuotaLeaseClient<Channel> {
        QuotaLeaseClient::new(self.channel().await)
    }

    /// `/metrics` on the HTTP port (HTTP/1.1, one connection per request).
    async fn metrics(&self) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.http).await.unwrap();
        let request = "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    async fn shutdown(self) {
        (self.spawned.shutdown(Duration::from_secs(5)).await)
            .expect("graceful shutdown within 5 s")
            .unwrap();
    }
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("test.yaml");
    // Write then rename, so a reload never sees half a file.
    let tmp = dir.join(".test.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn memory_settings(dir: &Path) -> Settings {
    Settings {
        reload_interval: Duration::from_millis(50),
        ..Settings::new(write_config(dir, CONFIG), StoreSettings::Memory)
    }
}

fn descriptors(descriptors: &[&[(&str, &str)]]) -> Vec<Descriptor> {
    descriptors
        .iter()
        .map(|entries| Descriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
        })
        .collect()
}

fn lease_request(domain: &str, d: &[&[(&str, &str)]], want: u32) -> LeaseRequest {
    LeaseRequest {
        domain: domain.into(),
        descriptors: descriptors(d),
        want,
    }
}

async fn lease(
    client: &mut QuotaLeaseClient<Channel>,
    d: &[&[(&str, &str)]],
    want: u32,
) -> LeaseResponse {
    client
        .lease(lease_request("test", d, want))
        .await
        .unwrap()
        .into_inner()
}

async fn give_back(client: &mut QuotaLeaseClient<Channel>, d: &[&[(&str, &str)]], n: u32) -> u32 {
    let request = ReturnRequest {
        domain: "test".into(),
        descriptors: descriptors(d),
        tokens: n,
    };
    client
        .r#return(request)
        .await
        .unwrap()
        .into_inner()
        .returned
}

#[tokio::test]
async fn lease_and_return_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(memory_settings(dir.path())).await;
    let mut client = service.client().await;
    let d = lease(&mut client, &[&[("route", "orders")]], 100).await;
    assert_eq!(d.mode, LeaseMode::Leased as i32);
    assert_eq!((d.granted, d.lease_size), (10, 10));
    assert_eq!((d.expires_in_ms, d.retry_after_ms), (2000, 0));
    let state = &d.limits[0];
    assert_eq!(state.name, "route=orders");
    assert_eq!((state.requests_per_unit, state.unit_seconds), (600, 3600));
    assert_eq!((state.remaining, state.next_token_ms), (590, 0));
    assert_eq!(
        give_back(&mut client, &[&[("route", "orders")]], 4).await,
        4
    );
    let d = lease(&mut client, &[&[("route", "orders")]], 1).await;
    assert_eq!(d.limits[0].remaining, 593, "the 4 came back");

    // An exact limit among the descriptors: one token per call, 3 per minute in all.
    let both: &[&[(&str, &str)]] = &[&[("route", "orders")], &[("tenant", "tiny")]];
    for _ in 0..3 {
        let d = lease(&mut client, both, 10).await;
        assert_eq!((d.mode, d.granted), (LeaseMode::Exact as i32, 1));
    }
    let d = lease(&mut client, both, 10).await;
    assert_eq!(d.granted, 0);
    assert!(
        (19_000..=20_000).contains(&d.retry_after_ms),
        "{}",
        d.retry_after_ms
    );
    let d = lease(&mut client, &[&[("route", "orders")]], 1).await;
    assert_eq!(
        d.limits[0].remaining, 589,
        "the refused call charged nothing"
    );
    assert_eq!(give_back(&mut client, &[&[("tenant", "tiny")]], 3).await, 0);

    let status = client
        .lease(lease_request("test", &[&[("route", "x")]], 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "want must be at least 1");
    service.shutdown().await;
}

#[tokio::test]
async fn unknown_domains_and_descriptors_are_unlimited() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(memory_settings(dir.path())).await;
    let mut client = service.client().await;
    for d in [
        lease(&mut client, &[&[("health", "x")], &[("nothing", "y")]], 5).await,
        lease(&mut client, &[&[("route", "a"), ("extra", "b")]], 5).await,
    ] {
        assert_eq!(d.mode, LeaseMode::Unlimited as i32);
        assert_eq!((d.granted, d.lease_size), (0, 0));
        assert_eq!(d.expires_in_ms, 500, "the domain's smallest lease_ttl");
        assert!(d.limits.is_empty());
    }
    let other = client
        .lease(lease_request("elsewhere", &[&[("route", "a")]], 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.mode, LeaseMode::Unlimited as i32);
    assert_eq!(other.expires_in_ms, 5000, "the default lease_ttl");
    let mut health = tonic_health::pb::health_client::HealthClient::new(service.channel().await);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "edgegate.ratelimit.v1.QuotaLease".into(),
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
async fn hot_reload_changes_the_next_grant() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(memory_settings(dir.path())).await;
    let mut client = service.client().await;
    assert_eq!(
        lease(&mut client, &[&[("route", "r")]], 100).await.granted,
        10
    );
    write_config(
        dir.path(),
        &CONFIG.replace("lease_size: 10", "lease_size: 25"),
    );
    eventually("leases of the new size", Duration::from_secs(10), || {
        let mut client = client.clone();
        async move {
            let d = lease(&mut client, &[&[("route", "r")]], 100).await;
            (d.granted == 25 && d.lease_size == 25).then_some(())
        }
    })
    .await;
    write_config(
        dir.path(),
        &CONFIG.replace("mode: leased, lease_size: 10, lease_ttl: 2s", "mode: exact"),
    );
    eventually("the limit to become exact", Duration::from_secs(10), || {
        let mut client = client.clone();
        async move {
            let d = lease(&mut client, &[&[("route", "r")]], 100).await;
            (d.mode == LeaseMode::Exact as i32 && d.granted == 1).then_some(())
        }
    })
    .await;
    service.shutdown().await;
}

fn rls_request(domain: &str, key: &str, value: &str) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![RlsEntry {
                key: key.into(),
                value: value.into(),
            }],
            ..RateLimitDescriptor::default()
        }],
        hits_addend: 0,
    }
}

#[tokio::test]
async fn metrics_count_lease_and_should_rate_limit_calls_apart() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(memory_settings(dir.path())).await;
    let mut client = service.client().await;
    let mut rls = RateLimitServiceClient::new(service.channel().await);
    for domain in ["test", "test", "other"] {
        rls.should_rate_limit(rls_request(domain, "route", "m"))
            .await
            .unwrap();
    }
    lease(&mut client, &[&[("route", "m")]], 7).await;
    lease(&mut client, &[&[("route", "m")]], 10).await;
    for _ in 0..4 {
        lease(&mut client, &[&[("tenant", "tiny")]], 1).await;
    }
    lease(&mut client, &[&[("health", "m")]], 1).await;
    give_back(&mut client, &[&[("route", "m")]], 3).await;
    let body = service.metrics().await;
    for line in [
        r#"ratelimit_should_rate_limit_requests_total{domain="test"} 2"#,
        r#"ratelimit_should_rate_limit_requests_total{domain="_unknown"} 1"#,
        r#"ratelimit_lease_requests_total{domain="test",mode="leased"} 2"#,
        r#"ratelimit_lease_requests_total{domain="test",mode="exact"} 4"#,
        r#"ratelimit_lease_requests_total{domain="test",mode="unlimited"} 1"#,
        r#"ratelimit_lease_tokens_granted_total{domain="test",mode="leased"} 17"#,
        r#"ratelimit_lease_tokens_granted_total{domain="test",mode="exact"} 3"#,
        r#"ratelimit_lease_zero_grants_total{domain="test",mode="exact"} 1"#,
        r#"ratelimit_lease_return_requests_total{domain="test"} 1"#,
        r#"ratelimit_lease_tokens_returned_total{domain="test"} 3"#,
    ] {
        assert!(body.contains(line), "{line} missing in\n{body}");
    }
    assert!(
        !body.contains(r#"ratelimit_lease_zero_grants_total{domain="test",mode="leased"}"#),
        "no leased call granted 0"
    );
    service.shutdown().await;
}

#[tokio::test]
async fn two_instances_sharing_redis_never_lease_more_than_the_bucket_releases() {
    let redis = redis_fixture::RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        redis_timeout: Duration::from_secs(1),
        ..Settings::new(
            write_config(dir.path(), CONFIG),
            StoreSettings::Redis { url: redis.url() },
        )
    };
    let a = Service::start(settings.clone()).await;
    let b = Service::start(settings).await;
    let clients = [a.client().await, b.client().await];
    let granted = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_millis(1500);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut client = clients[i % 2].clone();
        let granted = Arc::clone(&granted);
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < run_for {
                let d = lease(&mut client, &[&[("hot", "key")]], 5).await;
                granted.fetch_add(u64::from(d.granted), Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let granted = granted.load(Ordering::Relaxed) as f64;
    // burst 20, 100 per second: never more than capacity + refill over the run; with 64
    // callers every token is taken soon after it is due (slack: connection warm-up and the
    // calls in flight at the end, in a debug build).
    let ceiling = 20.0 + 100.0 * elapsed;
    let floor = 20.0 + 100.0 * (elapsed - 0.25);
    eprintln!("granted {granted} in {elapsed:.3} s (ceiling {ceiling:.1}, floor {floor:.1})");
    assert!(granted <= ceiling.floor(), "granted {granted} > {ceiling}");
    assert!(granted >= floor, "granted {granted} < {floor}");
    a.shutdown().await;
    b.shutdown().await;
}
