//! The service end to end, in process: `run(...)` on port 0, real gRPC and HTTP clients, a
//! real Redis where the scenario needs one. Waits poll with a deadline, never sleep blindly.
// Test crate: helpers outside #[test] fns may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use test_harness::redis as redis_fixture;
use test_harness::wait::eventually;

use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use ratelimit_service::proto::revocation::revocation_service_client::RevocationServiceClient;
use ratelimit_service::proto::revocation::{
    ListRevocationsRequest, ListRevocationsResponse, RevokeRequest,
};
use ratelimit_service::proto::rls::rate_limit_response::Code;
use ratelimit_service::proto::rls::rate_limit_service_client::RateLimitServiceClient;
use ratelimit_service::proto::rls::{RateLimitRequest, RateLimitResponse};
use ratelimit_service::{run, Listeners, RevocationAccess, ServerError, Settings, StoreSettings};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const CONFIG: &str = r#"
domain: test
descriptors:
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: hot
    rate_limit: { unit: second, requests_per_unit: 100, burst: 20 }
"#;

/// The revocation API's bearer token in these tests (every HTTP request and gRPC Revoke here
/// carries it; tests/revocation.rs covers requests without it).
const REVOCATION_TOKEN: &str = "service-test-revocation-token-0123456789";

fn revocation_access() -> RevocationAccess {
    RevocationAccess::with_token(REVOCATION_TOKEN).unwrap()
}

struct Service {
    grpc: SocketAddr,
    http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Service {
    async fn start(settings: Settings) -> Service {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Listeners { grpc, http }, settings, async move {
            let _ = stopped.await;
        }));
        Service {
            grpc: grpc_addr,
            http: http_addr,
            stop: Some(stop),
            task,
        }
    }

    async fn client(&self) -> RateLimitServiceClient<Channel> {
        let url = format!("http://{}", self.grpc);
        eventually(
            "gRPC server accepts connections",
            Duration::from_secs(10),
            || {
                let url = url.clone();
                async move { RateLimitServiceClient::connect(url).await.ok() }
            },
        )
        .await
    }

    async fn revocations(&self) -> RevocationServiceClient<Channel> {
        let url = format!("http://{}", self.grpc);
        eventually(
            "gRPC server accepts connections",
            Duration::from_secs(10),
            || {
                let url = url.clone();
                async move { RevocationServiceClient::connect(url).await.ok() }
            },
        )
        .await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path).await
    }

    async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
        )
    }

    async fn post_json(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, body) = http_request(self.http, "POST", path, body).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
        )
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("graceful shutdown within 5 s")
            .unwrap()
            .unwrap();
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, "").await
}

/// One HTTP/1.1 request on a fresh connection with the revocation token; the body is sent as
/// is (no content type).
async fn http_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Authorization: Bearer {REVOCATION_TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // A server refusing an oversize body may reset the connection after answering: keep what
    // arrived.
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("test.yaml");
    // Write then rename, as config management tools do, so a reload never sees half a file.
    let tmp = dir.join(".test.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn request(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: descriptors
            .iter()
            .map(|entries| RateLimitDescriptor {
                entries: entries
                    .iter()
                    .map(|(k, v)| Entry {
                        key: (*k).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                ..RateLimitDescriptor::default()
            })
            .collect(),
        hits_addend: 0,
    }
}

async fn call(
    client: &mut RateLimitServiceClient<Channel>,
    req: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    client.should_rate_limit(req).await.map(|r| r.into_inner())
}

fn memory_settings(dir: &Path) -> Settings {
    let path = write_config(dir, CONFIG);
    Settings {
        reload_interval: Duration::from_millis(50),
        revocation_access: revocation_access(),
        ..Settings::new(path, StoreSettings::Memory)
    }
}

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

#[test]
fn binary_validates_configs_and_prints_bound_addresses() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_ratelimit-service");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let ok = Command::new(bin)
        .arg("--validate")
        .arg(fixtures.join("valid"))
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "OK\n");
    let bad_file = fixtures.join("invalid/bad_unit.yaml");
    let bad = Command::new(bin)
        .arg("--validate")
        .arg(&bad_file)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        format!(
            "{}: descriptors[0].rate_limit.unit: unknown unit \"fortnight\" (expected second, minute, hour, day, month or year)\n",
            bad_file.display()
        )
    );

    let mut child = Command::new(bin)
        .args([
            "--store",
            "memory",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(fixtures.join("valid"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addrs: serde_json::Value = serde_json::from_str(&line).unwrap();
    let grpc: SocketAddr = addrs["grpc_addr"].as_str().unwrap().parse().unwrap();
    let http: SocketAddr = addrs["http_addr"].as_str().unwrap().parse().unwrap();
    assert_ne!(grpc.port(), 0);
    assert_ne!(http.port(), 0);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A gRPC Revoke carrying `authorization: Bearer <REVOCATION_TOKEN>`.
fn revoke_request(issuer: &str, jti: &str, expires_at: u64) -> tonic::Request<RevokeRequest> {
    let mut request = tonic::Request::new(RevokeRequest {
        issuer: issuer.into(),
        jti: jti.into(),
        expires_at,
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {REVOCATION_TOKEN}").parse().unwrap(),
    );
    request
}

async fn list_since(
    client: &mut RevocationServiceClient<Channel>,
    since_version: u64,
) -> ListRevocationsResponse {
    client
        .list_revocations(ListRevocationsRequest { since_version })
        .await
        .unwrap()
        .into_inner()
}

fn jtis(list: &ListRevocationsResponse) -> Vec<&str> {
    list.revocations.iter().map(|r| r.jti.as_str()).collect()
}

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

/// The real binary with real Redis: the `revoke` and `list-revocations` subcommands against
/// its gRPC port, and the HTTP endpoint.
#[tokio::test]
async fn binary_serves_revocations_to_the_cli_and_over_http() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let redis = redis_fixture::RedisServer::start().unwrap();
    let bin = env!("CARGO_BIN_EXE_ratelimit-service");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    /// Kills the service if the test fails before its graceful stop.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(bin)
            .args(["--store", "redis", "--redis-url", &redis.url()])
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .arg("--config")
            .arg(fixtures.join("valid"))
            .env("RLS_REVOCATION_TOKEN", REVOCATION_TOKEN)
            .env_remove("RLS_REVOCATION_TOKEN_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addrs: serde_json::Value = serde_json::from_str(&line).unwrap();
    let grpc = addrs["grpc_addr"].as_str().unwrap().to_owned();
    let http: SocketAddr = addrs["http_addr"].as_str().unwrap().parse().unwrap();

    // The CLI with the given token variable (none by default) and nothing else inherited.
    let cli_with = |args: &[&str], token_env: Option<&str>| {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_remove("RLS_REVOCATION_TOKEN")
            .env_remove("RLS_REVOCATION_TOKEN_FILE");
        if let Some(token) = token_env {
            cmd.env("RLS_REVOCATION_TOKEN", token);
        }
        let output = cmd.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let cli = |args: &[&str]| cli_with(args, None);
    let revoke_args = |jti: &'static str, until: &'static str| {
        vec![
            "revoke".to_owned(),
            "--grpc-addr".to_owned(),
            grpc.clone(),
            "--issuer".to_owned(),
            "https://idp".to_owned(),
            "--jti".to_owned(),
            jti.to_owned(),
            "--until".to_owned(),
            until.to_owned(),
        ]
    };

    // Without the token the service refuses, and the CLI says what to pass.
    let args = revoke_args("no-token", "+1h");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = cli(&args);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("revoke failed: Unauthenticated"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--revocation-token-file or RLS_REVOCATION_TOKEN"),
        "{stderr}"
    );
    // A wrong one is refused too (and not echoed).
    let (ok, _, stderr) = cli_with(&args, Some("a-wrong-token-of-enough-length"));
    assert!(!ok);
    assert!(
        stderr.contains("revoke failed: Unauthenticated"),
        "{stderr}"
    );
    assert!(!stderr.contains("a-wrong-token"), "{stderr}");

    // With the token from the environment.
    let before = unix_now();
    let args = revoke_args("cli-1", "+1h");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = cli_with(&args, Some(REVOCATION_TOKEN));
    let after = unix_now();
    assert!(ok, "{stderr}");
    let version = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["version"]
        .as_u64()
        .unwrap();
    assert!(version > 0);

    let until = unix_now() + 600;
    let (status, body) = http_request(
        http,
        "POST",
        "/revocations",
        &format!(r#"{{"issuer":"https://idp","jti":"http-1","expires_at":{until}}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (ok, stdout, stderr) = cli(&[
        "list-revocations",
        "--grpc-addr",
        &grpc,
        "--since",
        &version.to_string(),
    ]);
    assert!(ok, "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["full"], false);
    assert_eq!(listed["revocations"][0]["jti"], "http-1");
    assert_eq!(listed["revocations"][0]["expires_at"], until);
    assert_eq!(listed["revocations"].as_array().unwrap().len(), 1);

    let (status, body) = http_get(http, "/revocations").await;
    assert_eq!(status, 200);
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let jtis: Vec<&str> = all["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["jti"].as_str().unwrap())
        .collect();
    assert_eq!(jtis, ["cli-1", "http-1"]);
    let cli_until = all["revocations"][0]["expires_at"].as_u64().unwrap();
    assert!(
        (before + 3600..=after + 3600).contains(&cli_until),
        "+1h between {before} and {after} -> {cli_until}"
    );

    // With the token from --revocation-token-file (a file's final newline is ignored).
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{REVOCATION_TOKEN}\n")).unwrap();
    let mut args = revoke_args("cli-2", "+1h");
    args.extend([
        "--revocation-token-file".to_owned(),
        token_file.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = cli(&args);
    assert!(ok, "{stderr}");
    let version_2 = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["version"]
        .as_u64()
        .unwrap();
    assert!(version_2 > version);
    // An unusable token file stops the CLI before it connects, naming the flag.
    std::fs::write(&token_file, "short\n").unwrap();
    let (ok, _, stderr) = cli(&args);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "--revocation-token-file {}: the token is 5 characters",
            token_file.display()
        )),
        "{stderr}"
    );

    // Past the token, the request is validated as before.
    let args = revoke_args("x", "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, stderr) = cli_with(&args, Some(REVOCATION_TOKEN));
    assert!(!ok);
    assert!(
        stderr.contains(
            "revoke failed: InvalidArgument: revocation expires_at 1 is not in the future"
        ),
        "{stderr}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        child.0.wait().unwrap().success(),
        "graceful exit on SIGTERM"
    );
}
