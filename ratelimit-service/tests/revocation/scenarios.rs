//! Scenarios that share a store, run against every store: in memory, a real Redis, and a Redis
//! Cluster shared by all of them (each uses an issuer of its own).

use crate::prelude::*;

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
