//! Coalesced ShouldRateLimit decisions: while one script call is in flight, the decisions that
//! arrive queue up and go out together as the next call (`rate_limit.lua` takes a batch), so
//! Redis pays its per-command cost once per batch instead of once per decision. Each decision
//! stays atomic on its own buckets, and decisions run in arrival order. A decision waits at
//! most for the call in flight when it arrived, then for its own.
//!
//! On Redis Cluster a batch holds only decisions of one hash tag (`{<domain>}`: one slot);
//! the batches of different tags go out at the same time.

use super::{expect_len, non_negative, push_bucket, store_error, timed_out, Connection};
use crate::storage::{BucketOutcome, BucketRequest, StoreError};
use redis::Script;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// At most this many decisions, or keys, per call (Lua's argument stack is bounded and one long
/// script would hold Redis up).
pub(super) const MAX_DECISIONS: usize = 128;
pub(super) const MAX_KEYS: usize = 1024;
/// Decisions that may wait for a call before senders are pushed back.
const QUEUE: usize = 8192;

pub(super) type Reply = Result<Vec<BucketOutcome>, StoreError>;

pub(super) struct Job {
    pub(super) buckets: Vec<BucketRequest>,
    pub(super) reply: oneshot::Sender<Reply>,
}

/// Starts the batching task on `connection`; decisions go in through the returned sender.
/// `limit`: the most decisions per call (the caller keeps it within 1..=[`MAX_DECISIONS`]).
pub(super) fn start(
    connection: Connection,
    script: Script,
    timeout: Duration,
    limit: usize,
) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(connection, script, timeout, limit, rx));
    tx
}

async fn run(
    connection: Connection,
    script: Script,
    timeout: Duration,
    limit: usize,
    mut rx: mpsc::Receiver<Job>,
) {
    while let Some(first) = rx.recv().await {
        let mut keys = first.buckets.len();
        let mut jobs = vec![first];
        while jobs.len() < limit && keys < MAX_KEYS {
            match rx.try_recv() {
                Ok(job) => {
                    keys += job.buckets.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let groups = match connection {
            Connection::Single(_) => vec![jobs],
            Connection::Cluster(_) => by_hash_tag(jobs),
        };
        let calls = groups
            .into_iter()
            .map(|group| call(&connection, &script, timeout, group));
        futures_util::future::join_all(calls).await;
    }
}

/// Jobs grouped by their first key's `{hash tag}` (all keys of one job share it).
fn by_hash_tag(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    for job in jobs {
        let tag = job
            .buckets
            .first()
            .and_then(|b| hash_tag(&b.key))
            .unwrap_or_default()
            .to_string();
        groups.entry(tag).or_default().push(job);
    }
    groups.into_values().collect()
}

/// What Redis Cluster hashes: the text between the first `{` and the next `}`, if not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let len = key[open + 1..].find('}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// One script call for `jobs`; each job gets its own slice of the answer (or the error).
async fn call(connection: &Connection, script: &Script, timeout: Duration, jobs: Vec<Job>) {
    let decisions: Vec<&[BucketRequest]> = jobs.iter().map(|j| j.buckets.as_slice()).collect();
    let reply = invoke(connection, script, timeout, &decisions).await;
    let mut at = 0;
    for job in jobs {
        let n = job.buckets.len();
        let answer = match &reply {
            Ok(values) => Ok(outcomes(&values[at * 5..(at + n) * 5])),
            Err(e) => Err(e.clone()),
        };
        at += n;
        // The caller may have given up (its own deadline): nobody to tell.
        let _ = job.reply.send(answer);
    }
}

/// One `rate_limit.lua` call for `decisions` (each one decision's buckets) within `timeout`:
/// five values per bucket, decision after decision.
pub(super) async fn invoke(
    connection: &Connection,
    script: &Script,
    timeout: Duration,
    decisions: &[&[BucketRequest]],
) -> Result<Vec<i64>, StoreError> {
    let mut invocation = script.prepare_invoke();
    invocation.arg(decisions.len());
    for buckets in decisions {
        invocation.arg(buckets.len());
    }
    for bucket in decisions.iter().flat_map(|d| d.iter()) {
        push_bucket(&mut invocation, bucket, bucket.hits);
    }
    let keys: usize = decisions.iter().map(|d| d.len()).sum();
    let reply: Vec<i64> = tokio::time::timeout(timeout, connection.invoke(&invocation))
        .await
        .map_err(|_| timed_out(timeout))?
        .map_err(|e| store_error("Redis script failed", e))?;
    expect_len(&reply, keys * 5, keys)?;
    Ok(reply)
}

/// The outcomes of a decision's buckets from their five values each.
pub(super) fn outcomes(values: &[i64]) -> Vec<BucketOutcome> {
    values
        .chunks_exact(5)
        .map(|c| BucketOutcome {
            allowed: c[0] == 1,
            remaining: non_negative(c[1]),
            reset_ms: non_negative(c[2]),
            retry_ms: non_negative(c[3]),
            empty_ms: non_negative(c[4]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_as_redis_cluster_reads_them() {
        assert_eq!(hash_tag("rl:{files}:t1:a=b"), Some("files"));
        assert_eq!(hash_tag("rl:{}:x"), None);
        assert_eq!(hash_tag("rl:files"), None);
        assert_eq!(hash_tag("rl:{a}{b}"), Some("a"));
    }
}
