//! The revocation store semantics, run against every store: in memory, a real Redis, and a
//! Redis Cluster. Scenarios that share a store (the cluster is shared by all its scenarios)
//! use an issuer of their own and look only at their own entries; the ones that need a store
//! to themselves (the entry bound, a reset) run on memory and standalone Redis.
// Test crate: helpers outside #[test] fns may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/src/redis.rs"]
#[allow(dead_code)]
mod redis_fixture;

use ratelimit_service::revocation::memory::MemoryRevocations;
use ratelimit_service::revocation::redis::RedisRevocations;
use ratelimit_service::revocation::{
    RevocationError, RevocationList, RevocationStore, RevokeRequest, Revoked,
};
use ratelimit_service::storage::memory::SystemClock;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Polls `probe` until it yields a value (deadline `within`).
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
