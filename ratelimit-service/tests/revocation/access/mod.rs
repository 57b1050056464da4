//! The revocation API's access control, HTTP and gRPC: the service in process on port 0 (and
//! the real binary for its log and its startup errors).
//!
//! The fixture (the service, raw HTTP requests, gRPC metadata, the binary) is here; the tests
//! are in `http`, `grpc` and `binary`.

use crate::prelude::*;
use ratelimit_service::proto::revocation::revocation_service_client::RevocationServiceClient;
use ratelimit_service::proto::revocation::{ListRevocationsRequest, RevokeRequest};
use ratelimit_service::{RevocationAccess, Settings, Spawned, StoreSettings};
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

mod binary;
mod grpc;
mod http;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/valid");
const TOKEN: &str = "revocation-test-token-5f0c2a9d81e4b7";
/// As long as TOKEN and sharing its first half: only the digest comparison tells them apart.
const WRONG_SAME_LENGTH: &str = "revocation-test-token-00000000000000";

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// The service in process (memory store) with the fixture config.
struct Service {
    grpc: SocketAddr,
    http: SocketAddr,
    spawned: Spawned,
}

impl Service {
    async fn start(access: RevocationAccess) -> Service {
        let settings = Settings {
            revocation_access: access,
            ..Settings::new(Path::new(FIXTURES), StoreSettings::Memory)
        };
        let spawned = Spawned::start(settings).await.unwrap();
        Service {
            grpc: spawned.grpc,
            http: spawned.http,
            spawned,
        }
    }

    async fn send(&self, method: &str, path: &str, headers: &[&str], body: &str) -> Reply {
        send(self.http, method, path, headers, body).await
    }

    /// The value of one series on `/metrics` (`name{labels}` exactly as exposed).
    async fn metric(&self, series: &str) -> u64 {
        let metrics = self.send("GET", "/metrics", &[], "").await.body;
        let prefix = format!("{series} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    }

    /// `ratelimit_revocations_added_total`: what the refused requests did not change.
    async fn added(&self) -> u64 {
        self.metric("ratelimit_revocations_added_total").await
    }

    /// `ratelimit_revocation_requests_refused_total` of one transport and reason.
    async fn refused(&self, transport: &str, reason: &str) -> u64 {
        self.metric(&format!(
            r#"ratelimit_revocation_requests_refused_total{{transport="{transport}",reason="{reason}"}}"#
        ))
        .await
    }

    /// A gRPC client of the RevocationService (the listener is bound: it connects at once).
    async fn grpc(&self) -> RevocationServiceClient<Channel> {
        RevocationServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    async fn shutdown(self) {
        (self.spawned.shutdown(Duration::from_secs(5)).await)
            .expect("graceful shutdown within 5 s")
            .unwrap();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    /// The header block, names lowercased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, self.body))
    }

    /// 401, `{"error":"unauthorized",...}` and a Bearer challenge.
    fn assert_unauthorized(&self, what: &str) {
        assert_eq!(self.status, 401, "{what}: {self:?}");
        assert_eq!(self.json()["error"], "unauthorized", "{what}: {self:?}");
        let challenge = self.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{what}: {self:?}");
    }
}

/// One HTTP/1.1 request on a fresh connection, with extra header lines (`name: value`).
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn revoke_body(jti: &str) -> String {
    format!(
        r#"{{"issuer":"https://idp","jti":"{jti}","expires_at":{}}}"#,
        now() + 600
    )
}

const REASONS: [&str; 4] = ["disabled", "missing", "malformed", "wrong"];

fn revoke_message(jti: &str) -> RevokeRequest {
    RevokeRequest {
        issuer: "https://idp".into(),
        jti: jti.into(),
        expires_at: now() + 600,
    }
}

/// gRPC metadata entries: (key, value).
type Metadata = Vec<(&'static str, String)>;

/// A gRPC request carrying these metadata entries (`key`, `value`), in order.
fn with_metadata<T>(message: T, entries: &[(&'static str, String)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (key, value) in entries {
        request.metadata_mut().append(*key, value.parse().unwrap());
    }
    request
}

fn grpc_bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

/// Kills the service if a test fails before it is done with it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary (memory store, JSON logs on stderr into `log`) with extra flags.
fn binary(args: &[&str], log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ratelimit-service"));
    cmd.args(["--store", "memory", "--log-format", "json"])
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--config", FIXTURES])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RLS_REVOCATION_TOKEN")
        .env_remove("RLS_REVOCATION_TOKEN_FILE")
        .env_remove("RLS_REVOCATION_READ_PUBLIC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    cmd
}
