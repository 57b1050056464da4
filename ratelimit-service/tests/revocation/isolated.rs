//! Scenarios that need a store to themselves: the entry bound, a reset, a restart, and the
//! Redis key scheme.

use crate::prelude::*;

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
