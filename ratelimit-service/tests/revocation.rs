//! The revocation store semantics, run against every store: in memory, a real Redis, and a
//! Redis Cluster. Scenarios that share a store (the cluster is shared by all its scenarios)
//! use an issuer of their own and look only at their own entries; the ones that need a store
//! to themselves (the entry bound, a reset) run on memory and standalone Redis.
// Test crate: helpers outside #[test] fns may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use test_harness::redis as redis_fixture;
use test_harness::wait::eventually;

use ratelimit_service::revocation::memory::MemoryRevocations;
use ratelimit_service::revocation::redis::RedisRevocations;
use ratelimit_service::revocation::{
    RevocationError, RevocationList, RevocationStore, RevokeRequest, Revoked,
};
use ratelimit_service::storage::memory::SystemClock;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An issuer nobody else uses, so scenarios sharing one store never meet.
fn unique_issuer(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("https://idp.test/{name}/{}/{nanos}", std::process::id())
}

fn request(issuer: &str, jti: &str, expires_at: u64) -> RevokeRequest {
    RevokeRequest {
        issuer: issuer.into(),
        jti: jti.into(),
        expires_at,
    }
}

async fn revoke<S: RevocationStore>(
    store: &S,
    issuer: &str,
    jti: &str,
    expires_at: u64,
) -> Revoked {
    store
        .revoke(&request(issuer, jti, expires_at))
        .await
        .unwrap()
}

/// This issuer's entries of a list: (jti, expires_at), in list order.
fn mine(list: &RevocationList, issuer: &str) -> Vec<(String, u64)> {
    list.revocations
        .iter()
        .filter(|r| r.issuer == issuer)
        .map(|r| (r.jti.clone(), r.expires_at))
        .collect()
}

fn entry(jti: &str, expires_at: u64) -> (String, u64) {
    (jti.to_owned(), expires_at)
}

async fn revoke_then_list_full_and_incremental<S: RevocationStore>(store: S) {
    let issuer = unique_issuer("list");
    let until = now() + 600;
    let a = revoke(&store, &issuer, "a", until).await;
    assert!(a.changed);
    assert!(a.live >= 1);
    let b = revoke(&store, &issuer, "b", until + 1).await;
    assert!(b.version > a.version, "{b:?} after {a:?}");

    let full = store.list(0).await.unwrap();
    assert!(full.full);
    assert!(full.version >= b.version);
    assert_eq!(
        mine(&full, &issuer),
        [entry("a", until), entry("b", until + 1)]
    );
    let listed: Vec<u64> = full
        .revocations
        .iter()
        .filter(|r| r.issuer == issuer)
        .map(|r| r.version)
        .collect();
    assert_eq!(listed, [a.version, b.version]);

    let since_a = store.list(a.version).await.unwrap();
    assert!(!since_a.full);
    assert_eq!(mine(&since_a, &issuer), [entry("b", until + 1)]);
    assert!(since_a.revocations.iter().all(|r| r.version > a.version));
    let since_b = store.list(b.version).await.unwrap();
    assert!(!since_b.full);
    assert!(mine(&since_b, &issuer).is_empty());

    // The same jti of another issuer is another token.
    let other = unique_issuer("list-other");
    let c = revoke(&store, &other, "a", until).await;
    assert!(c.changed);
    let since_b = store.list(b.version).await.unwrap();
    assert_eq!(mine(&since_b, &other), [entry("a", until)]);
    assert!(mine(&since_b, &issuer).is_empty());
}

async fn re_revoking_keeps_the_later_expiry<S: RevocationStore>(store: S) {
    let issuer = unique_issuer("again");
    let until = now() + 600;
    let first = revoke(&store, &issuer, "t", until).await;
    let earlier = revoke(&store, &issuer, "t", until - 300).await;
    assert!(!earlier.changed, "an earlier expiry changes nothing");
    assert!(earlier.version >= first.version);
    let same = revoke(&store, &issuer, "t", until).await;
    assert!(!same.changed);
    assert!(mine(&store.list(first.version).await.unwrap(), &issuer).is_empty());

    let later = revoke(&store, &issuer, "t", until + 600).await;
    assert!(later.changed);
    assert!(later.version > first.version);
    // The extended entry shows up again after the caller's version, under its new version.
    let since = store.list(first.version).await.unwrap();
    assert_eq!(mine(&since, &issuer), [entry("t", until + 600)]);
    let listed = since
        .revocations
        .iter()
        .find(|r| r.issuer == issuer)
        .unwrap();
    assert_eq!(listed.version, later.version);
    // And it is one entry, not two.
    let full = store.list(0).await.unwrap();
    assert_eq!(mine(&full, &issuer), [entry("t", until + 600)]);
}

async fn expired_entries_disappear<S: RevocationStore>(store: S) {
    let issuer = unique_issuer("expiry");
    let start = now();
    // Expires within 3 s (at least 2 s from now, so it is still live when first listed).
    let short = revoke(&store, &issuer, "short", start + 3).await;
    revoke(&store, &issuer, "long", start + 600).await;
    let before = store.list(0).await.unwrap();
    assert!(mine(&before, &issuer).contains(&entry("short", start + 3)));
    eventually(
        "the short revocation to expire",
        Duration::from_secs(6),
        || async {
            let list = store.list(0).await.unwrap();
            (mine(&list, &issuer) == [entry("long", start + 600)]).then_some(())
        },
    )
    .await;
    // Not in incremental lists either.
    let since = store.list(short.version - 1).await.unwrap();
    assert_eq!(mine(&since, &issuer), [entry("long", start + 600)]);
    // A new write prunes it for good; the token can be revoked again.
    let again = revoke(&store, &issuer, "short", now() + 600).await;
    assert!(again.changed);
}

async fn bad_input_is_rejected_and_changes_nothing<S: RevocationStore>(store: S) {
    let issuer = unique_issuer("bad");
    let before = store.list(0).await.unwrap().version;
    let until = now() + 600;
    let long = "x".repeat(1025);
    let cases = [
        (
            request("", "j", until),
            "revocation issuer must not be empty",
        ),
        (
            request(&issuer, "", until),
            "revocation jti must not be empty",
        ),
        (
            request(&issuer, &long, until),
            "revocation jti is 1025 bytes, over the maximum of 1024",
        ),
        (
            request(&long, "j", until),
            "revocation issuer is 1025 bytes, over the maximum of 1024",
        ),
        (request(&issuer, "j", now() - 1), "is not in the future"),
        (request(&issuer, "j", 0), "is not in the future"),
        (request(&issuer, "j", until * 1000), "not milliseconds"),
    ];
    for (bad, expected) in cases {
        match store.revoke(&bad).await {
            Err(RevocationError::Invalid(message)) => {
                assert!(message.contains(expected), "{message:?} lacks {expected:?}")
            }
            other => panic!("{bad:?}: expected Invalid, got {other:?}"),
        }
    }
    let after = store.list(0).await.unwrap();
    assert!(mine(&after, &issuer).is_empty());
    assert!(after.version >= before);
}

async fn concurrent_revocations_get_distinct_versions<S: RevocationStore>(store: S) {
    let store = Arc::new(store);
    let issuer = unique_issuer("concurrent");
    let until = now() + 600;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = Arc::clone(&store);
            let issuer = issuer.clone();
            tokio::spawn(async move { revoke(&*store, &issuer, &format!("t{i}"), until).await })
        })
        .collect();
    let mut versions = HashSet::new();
    for task in tasks {
        let revoked = task.await.unwrap();
        assert!(revoked.changed);
        assert!(
            versions.insert(revoked.version),
            "version {} twice",
            revoked.version
        );
    }
    let lowest = versions.iter().min().copied().unwrap();
    let full = store.list(0).await.unwrap();
    assert_eq!(mine(&full, &issuer).len(), 40);
    let since = store.list(lowest).await.unwrap();
    assert_eq!(mine(&since, &issuer).len(), 39, "all but the first");
}

macro_rules! shared_store_scenarios {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(MemoryRevocations::new(SystemClock, 1000)).await;
                }
            )*
        }

        mod redis {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let server = redis_fixture::RedisServer::start().unwrap();
                    let store = RedisRevocations::connect(&server.url(), 1000).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }

        mod redis_cluster {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let cluster = super::cluster();
                    let store = RedisRevocations::connect(&cluster.url(), 100_000)
                        .await
                        .unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

/// One cluster shared by the cluster scenarios; torn down with the last handle.
fn cluster() -> Arc<redis_fixture::RedisCluster> {
    use std::sync::{Mutex, Weak};
    static SHARED: Mutex<Weak<redis_fixture::RedisCluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(redis_fixture::RedisCluster::start().unwrap());
    *shared = Arc::downgrade(&cluster);
    cluster
}

shared_store_scenarios!(
    revoke_then_list_full_and_incremental,
    re_revoking_keeps_the_later_expiry,
    expired_entries_disappear,
    bad_input_is_rejected_and_changes_nothing,
    concurrent_revocations_get_distinct_versions,
);

/// Needs a store of its own, bounded at 3 live entries.
async fn a_full_store_refuses_new_entries_until_some_expire<S: RevocationStore>(store: S) {
    let issuer = unique_issuer("full");
    let start = now();
    revoke(&store, &issuer, "a", start + 600).await;
    revoke(&store, &issuer, "b", start + 600).await;
    let c = revoke(&store, &issuer, "soon", start + 3).await;
    assert_eq!(c.live, 3);
    let refused = store.revoke(&request(&issuer, "d", start + 600)).await;
    match refused {
        Err(err @ RevocationError::Full { max: 3 }) => assert_eq!(
            err.to_string(),
            "revocation store is full: 3 live entries (--revocation-max-entries); \
             entries leave as they expire, or raise the limit"
        ),
        other => panic!("expected Full, got {other:?}"),
    }
    // Extending an entry is not a new entry.
    assert!(revoke(&store, &issuer, "a", start + 900).await.changed);
    // Once "soon" expires there is room again.
    let d = eventually("room after an expiry", Duration::from_secs(6), || async {
        store.revoke(&request(&issuer, "d", start + 600)).await.ok()
    })
    .await;
    assert_eq!(d.live, 3);
    let full = store.list(0).await.unwrap();
    assert_eq!(full.live, 3);
    assert_eq!(
        mine(&full, &issuer),
        [
            entry("b", start + 600),
            entry("a", start + 900),
            entry("d", start + 600)
        ]
    );
}

#[tokio::test]
async fn memory_store_is_bounded() {
    a_full_store_refuses_new_entries_until_some_expire(MemoryRevocations::new(SystemClock, 3))
        .await;
}

#[tokio::test]
async fn redis_store_is_bounded() {
    let server = redis_fixture::RedisServer::start().unwrap();
    let store = RedisRevocations::connect(&server.url(), 3).await.unwrap();
    a_full_store_refuses_new_entries_until_some_expire(store).await;
}

#[tokio::test]
async fn redis_reset_sends_callers_ahead_a_full_list_and_loses_nothing_after_it() {
    let server = redis_fixture::RedisServer::start().unwrap();
    let store = RedisRevocations::connect(&server.url(), 1000)
        .await
        .unwrap();
    let issuer = unique_issuer("reset");
    let until = now() + 600;
    revoke(&store, &issuer, "old", until).await;
    let seen = store.list(0).await.unwrap().version;

    assert!(server.command("FLUSHALL").unwrap().starts_with("+OK"));
    let after_reset = store.list(seen).await.unwrap();
    assert!(
        after_reset.full,
        "a caller ahead of the store replaces its set"
    );
    assert!(after_reset.revocations.is_empty());
    assert_eq!(after_reset.version, 0);

    // Revocations after the reset outrun the caller's old version (clock-seeded versions), so
    // a caller that missed the empty full list still gets them all incrementally.
    let mut versions = Vec::new();
    for jti in ["n1", "n2", "n3"] {
        versions.push(revoke(&store, &issuer, jti, until).await.version);
    }
    assert!(versions.iter().all(|v| *v > seen), "{versions:?} vs {seen}");
    let since_old = store.list(seen).await.unwrap();
    assert!(!since_old.full);
    assert_eq!(
        mine(&since_old, &issuer),
        [entry("n1", until), entry("n2", until), entry("n3", until)]
    );
}

#[tokio::test]
async fn memory_store_restart_behaves_like_a_reset() {
    let issuer = unique_issuer("restart");
    let until = now() + 600;
    let before = MemoryRevocations::new(SystemClock, 10);
    let seen = revoke(&before, &issuer, "old", until).await.version;
    drop(before);
    let after = MemoryRevocations::new(SystemClock, 10);
    let list = after.list(seen).await.unwrap();
    assert!(list.full);
    assert!(list.revocations.is_empty());
    let new = revoke(&after, &issuer, "new", until).await;
    assert!(new.version > seen);
    assert_eq!(
        mine(&after.list(seen).await.unwrap(), &issuer),
        [entry("new", until)]
    );
}

#[tokio::test]
async fn redis_keys_follow_the_documented_scheme_and_expire() {
    let server = redis_fixture::RedisServer::start().unwrap();
    let store = RedisRevocations::connect(&server.url(), 1000)
        .await
        .unwrap();
    let until = now() + 600;
    let revoked = revoke(&store, "https://idp", "abc", until).await;
    let reply = |cmd: &str| server.command(cmd).unwrap();
    assert_eq!(
        reply("GET rv:{revocations}:version"),
        format!(
            "${}\r\n{}\r\n",
            revoked.version.to_string().len(),
            revoked.version
        )
    );
    let record = format!("{until}:11:https://idpabc");
    assert_eq!(
        reply("HGET rv:{revocations}:entries 11:https://idpabc"),
        format!("${}\r\n{record}\r\n", record.len())
    );
    assert_eq!(
        reply(&format!("ZSCORE rv:{{revocations}}:by_version {record}")),
        format!(
            "${}\r\n{}\r\n",
            revoked.version.to_string().len(),
            revoked.version
        )
    );
    assert_eq!(
        reply("ZSCORE rv:{revocations}:by_expiry 11:https://idpabc"),
        format!("${}\r\n{until}\r\n", until.to_string().len())
    );
    for key in ["entries", "by_version", "by_expiry"] {
        let ttl = reply(&format!("TTL rv:{{revocations}}:{key}"));
        let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        assert!((595..=601).contains(&ttl), "{key} ttl {ttl}");
    }
    assert_eq!(
        reply("TTL rv:{revocations}:version"),
        ":-1\r\n",
        "never expires"
    );

    // The version key alone lost (e.g. evicted): versions still only go up.
    assert_eq!(reply("DEL rv:{revocations}:version"), ":1\r\n");
    let listed = store.list(0).await.unwrap();
    assert_eq!(listed.version, revoked.version);
    let next = revoke(&store, "https://idp", "def", until).await;
    assert!(next.version > revoked.version);
}

// ---- The revocation API's access control, HTTP and gRPC: the service in process on port 0
// (and the real binary for its log and its startup errors). ----

mod access {
    use super::{eventually, now};
    use ratelimit_service::proto::revocation::revocation_service_client::RevocationServiceClient;
    use ratelimit_service::proto::revocation::{ListRevocationsRequest, RevokeRequest};
    use ratelimit_service::{
        run, Listeners, RevocationAccess, ServerError, Settings, StoreSettings,
    };
    use std::io::BufRead as _;
    use std::net::SocketAddr;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tonic::transport::Channel;

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
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<Result<(), ServerError>>,
    }

    impl Service {
        async fn start(access: RevocationAccess) -> Service {
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
            let (stop, stopped) = oneshot::channel::<()>();
            let settings = Settings {
                revocation_access: access,
                ..Settings::new(Path::new(FIXTURES), StoreSettings::Memory)
            };
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
    async fn send(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> Reply {
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

    /// A refused request is logged (warn, with the peer address) and the log holds neither the
    /// credential presented nor the configured token.
    #[tokio::test]
    async fn refused_requests_are_logged_with_the_peer_and_without_the_credential() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let log = dir.path().join("stderr.log");
        let token_arg = token_file.to_str().unwrap();
        let mut child = KillOnDrop(
            binary(&["--revocation-token-file", token_arg], &log)
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        std::io::BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addrs: serde_json::Value = serde_json::from_str(&line).unwrap();
        let http: SocketAddr = addrs["http_addr"].as_str().unwrap().parse().unwrap();

        const PRESENTED: &str = "attacker-guess-MUST-NOT-BE-LOGGED-7731";
        send(
            http,
            "POST",
            "/revocations",
            &[&bearer(PRESENTED)],
            &revoke_body("x"),
        )
        .await
        .assert_unauthorized("the guess");
        send(
            http,
            "GET",
            "/revocations",
            &[&format!("Authorization: Basic {PRESENTED}")],
            "",
        )
        .await
        .assert_unauthorized("another scheme");
        let ok = send(
            http,
            "POST",
            "/revocations",
            &[&bearer(TOKEN)],
            &revoke_body("y"),
        )
        .await;
        assert_eq!(ok.status, 200, "{ok:?}");
        let grpc = addrs["grpc_addr"].as_str().unwrap();
        let mut client = RevocationServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
        let status = client
            .revoke(with_metadata(
                revoke_message("z"),
                &[grpc_bearer(PRESENTED)],
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

        let text = eventually("the refusals in the log", Duration::from_secs(10), || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                (text.matches("revocation API request refused").count() >= 3
                    && text.contains("token revoked"))
                .then_some(text)
            }
        })
        .await;
        let refusals: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| l.contains("revocation API request refused"))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let reasons: Vec<&str> = refusals
            .iter()
            .map(|r| r["fields"]["reason"].as_str().unwrap())
            .collect();
        assert_eq!(
            reasons,
            [
                "wrong bearer token",
                "Authorization is not one `Bearer <token>` header",
                "wrong bearer token",
            ]
        );
        let transports: Vec<&str> = refusals
            .iter()
            .map(|r| r["fields"]["transport"].as_str().unwrap())
            .collect();
        assert_eq!(transports, ["http", "http", "grpc"]);
        assert_eq!(
            refusals[2]["fields"]["path"],
            "/edgegate.revocation.v1.RevocationService/Revoke"
        );
        for refusal in &refusals {
            assert_eq!(refusal["level"], "WARN", "{refusal}");
            let peer = refusal["fields"]["peer"].as_str().unwrap();
            assert!(peer.starts_with("127.0.0.1:"), "{refusal}");
        }
        assert!(
            !text.contains(PRESENTED),
            "the presented credential is logged:\n{text}"
        );
        assert!(!text.contains(TOKEN), "the token is logged:\n{text}");
        assert!(
            text.contains(
                "revocation writes (HTTP POST /revocations, gRPC Revoke) need the bearer token"
            ),
            "{text}"
        );
    }

    /// A token file that is empty, too short or unreadable stops the service before it listens,
    /// with a message naming the flag; so do a blank RLS_REVOCATION_TOKEN and both at once.
    #[test]
    fn an_unusable_token_stops_startup_naming_where_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "abc").unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, TOKEN).unwrap();
        let missing = dir.path().join("missing");
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        let cases: Vec<(Vec<String>, Option<&str>, String)> = vec![
            (
                vec!["--revocation-token-file".into(), path(&empty)],
                None,
                format!(
                    "--revocation-token-file {}: the token is empty",
                    path(&empty)
                ),
            ),
            (
                vec!["--revocation-token-file".into(), path(&short)],
                None,
                format!(
                    "--revocation-token-file {}: the token is 3 characters; it must be at least 16",
                    path(&short)
                ),
            ),
            (
                vec!["--revocation-token-file".into(), path(&missing)],
                None,
                format!(
                    "--revocation-token-file {}: cannot read the token file",
                    path(&missing)
                ),
            ),
            (
                vec![],
                Some("  "),
                "RLS_REVOCATION_TOKEN: the token is empty".into(),
            ),
            (
                vec!["--revocation-token-file".into(), path(&good)],
                Some(TOKEN),
                "are both set".into(),
            ),
        ];
        for (args, env, expected) in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut cmd = binary(&args, &log);
            if let Some(token) = env {
                cmd.env("RLS_REVOCATION_TOKEN", token);
            }
            let output = cmd.output().unwrap();
            let stderr = std::fs::read_to_string(&log).unwrap();
            assert!(!output.status.success(), "{args:?} started");
            assert!(output.stdout.is_empty(), "{args:?}: it listened");
            assert!(
                stderr.contains(&expected),
                "{args:?}: {expected:?} not in {stderr}"
            );
            assert!(!stderr.contains(TOKEN), "{stderr}");
        }
    }
}
