//! The service in process on port 0, its clients, and the requests the tests send.

use crate::prelude::*;

pub const CONFIG: &str = r#"
domain: test
descriptors:
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: hot
    rate_limit: { unit: second, requests_per_unit: 100, burst: 20 }
"#;

/// The revocation API's bearer token in these tests (every HTTP request and gRPC Revoke here
/// carries it; tests/revocation/ covers requests without it).
pub const REVOCATION_TOKEN: &str = "service-test-revocation-token-0123456789";

pub fn revocation_access() -> RevocationAccess {
    RevocationAccess::with_token(REVOCATION_TOKEN).unwrap()
}

pub struct Service {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    spawned: Spawned,
}

impl Service {
    pub async fn start(settings: Settings) -> Service {
        let spawned = Spawned::start(settings).await.unwrap();
        Service {
            grpc: spawned.grpc,
            http: spawned.http,
            spawned,
        }
    }

    pub async fn client(&self) -> RateLimitServiceClient<Channel> {
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

    pub async fn revocations(&self) -> RevocationServiceClient<Channel> {
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

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path).await
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
        )
    }

    pub async fn post_json(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, body) = http_request(self.http, "POST", path, body).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
        )
    }

    pub async fn shutdown(self) {
        (self.spawned.shutdown(Duration::from_secs(5)).await)
            .expect("graceful shutdown within 5 s")
            .unwrap();
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, "").await
}

/// One HTTP/1.1 request on a fresh connection with the revocation token; the body is sent as
/// is (no content type).
pub async fn http_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
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

pub fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("test.yaml");
    // Write then rename, as config management tools do, so a reload never sees half a file.
    let tmp = dir.join(".test.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

pub fn request(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
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

pub async fn call(
    client: &mut RateLimitServiceClient<Channel>,
    req: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    client.should_rate_limit(req).await.map(|r| r.into_inner())
}

pub fn memory_settings(dir: &Path) -> Settings {
    let path = write_config(dir, CONFIG);
    Settings {
        reload_interval: Duration::from_millis(50),
        revocation_access: revocation_access(),
        ..Settings::new(path, StoreSettings::Memory)
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A gRPC Revoke carrying `authorization: Bearer <REVOCATION_TOKEN>`.
pub fn revoke_request(issuer: &str, jti: &str, expires_at: u64) -> tonic::Request<RevokeRequest> {
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

pub async fn list_since(
    client: &mut RevocationServiceClient<Channel>,
    since_version: u64,
) -> ListRevocationsResponse {
    client
        .list_revocations(ListRevocationsRequest { since_version })
        .await
        .unwrap()
        .into_inner()
}

pub fn jtis(list: &ListRevocationsResponse) -> Vec<&str> {
    list.revocations.iter().map(|r| r.jti.as_str()).collect()
}
