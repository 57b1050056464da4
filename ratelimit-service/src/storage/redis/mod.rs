//! Redis store over a multiplexed connection: `rate_limit.lua` for ShouldRateLimit, with the
//! decisions that arrive while a call is in flight coalesced into the next call ([`batch`]),
//! and `lease.lua` for leases and give-backs (one `EVALSHA` per call).
//!
//! URLs: `redis://`, `rediss://` (TLS), `unix:///path/redis.sock` for one server, through a
//! `ConnectionManager` that reconnects by itself after Redis restarts; and
//! `redis+cluster://host1:port1,host2:port2` (or `rediss+cluster://`) for Redis Cluster, through
//! the cluster client (seed nodes; the topology is discovered). Every call is bounded by a
//! timeout after which it fails as a transient error.

use super::{
    algorithm_code, BucketOutcome, BucketRequest, LeaseBucketOutcome, LeaseOutcome, Store,
    StoreError,
};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    FromRedisValue, IntoConnectionInfo, RedisError, RetryMethod, Script, ScriptInvocation,
};
use std::time::Duration;

mod batch;

/// The most decisions one script call carries (`--redis-batch-limit` is clamped to it).
pub const MAX_BATCH: usize = batch::MAX_DECISIONS;

const SCRIPT: &str = include_str!("rate_limit.lua");
const LEASE_SCRIPT: &str = include_str!("lease.lua");

/// A multiplexed connection to one Redis server or to a Redis Cluster. Cheap to clone; clones
/// share the connection.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Buckets in Redis (standalone or cluster).
pub struct RedisStore {
    connection: Connection,
    /// ShouldRateLimit decisions, to the batching task; `None`: one script call per decision.
    decisions: Option<tokio::sync::mpsc::Sender<batch::Job>>,
    script: Script,
    lease_script: Script,
    timeout: Duration,
}

pub(crate) fn store_error(context: &str, err: RedisError) -> StoreError {
    StoreError {
        message: format!("{context}: {err}"),
        transient: !matches!(err.retry_method(), RetryMethod::NoRetry),
    }
}

impl Connection {
    /// Connects according to the URL scheme. A standalone server is connected lazily, so the
    /// service can start (not ready) while Redis is still down; a cluster needs one seed node
    /// up to learn the topology. `cluster_response_timeout` bounds each cluster command (the
    /// caller's own deadline applies on top).
    pub(crate) async fn open(
        url: &str,
        cluster_response_timeout: Duration,
    ) -> Result<Self, StoreError> {
        if let Some((scheme, nodes)) = cluster_nodes(url) {
            let nodes: Vec<String> = nodes.map(|n| format!("{scheme}://{n}")).collect();
            let client = redis::cluster::ClusterClient::builder(nodes)
                .tcp_settings(low_latency_tcp())
                .connection_timeout(Duration::from_secs(1))
                .response_timeout(cluster_response_timeout)
                .build()
                .map_err(|e| store_error("invalid Redis Cluster URL", e))?;
            let connection = client
                .get_async_connection()
                .await
                .map_err(|e| store_error("cannot connect to Redis Cluster", e))?;
            Ok(Connection::Cluster(connection))
        } else {
            let info = url
                .into_connection_info()
                .map_err(|e| store_error("invalid Redis URL", e))?
                .set_tcp_settings(low_latency_tcp());
            let client =
                redis::Client::open(info).map_err(|e| store_error("invalid Redis URL", e))?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            let manager = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| store_error("cannot create Redis connection", e))?;
            Ok(Connection::Single(manager))
        }
    }

    /// Runs a script (`EVALSHA`, loading it on `NOSCRIPT`).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        match self {
            Connection::Single(manager) => invocation.invoke_async(&mut manager.clone()).await,
            Connection::Cluster(cluster) => invocation.invoke_async(&mut cluster.clone()).await,
        }
    }
}

impl RedisStore {
    /// Connects according to the URL scheme (see [`Connection::open`]).
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        Self::connect_with(url, timeout, MAX_BATCH).await
    }

    /// [`connect`](Self::connect), with at most `batch_limit` decisions per script call
    /// (clamped to 1..=[`MAX_BATCH`]); 1 sends each decision as its own call, concurrently, as
    /// envoyproxy/ratelimit does without `REDIS_PIPELINE_LIMIT`.
    pub async fn connect_with(
        url: &str,
        timeout: Duration,
        batch_limit: usize,
    ) -> Result<Self, StoreError> {
        let connection = Connection::open(url, Duration::from_secs(1)).await?;
        let script = Script::new(SCRIPT);
        let limit = batch_limit.clamp(1, MAX_BATCH);
        let decisions =
            (limit > 1).then(|| batch::start(connection.clone(), script.clone(), timeout, limit));
        Ok(RedisStore {
            connection,
            decisions,
            script,
            lease_script: Script::new(LEASE_SCRIPT),
            timeout,
        })
    }

    /// Runs `lease.lua` (`operation` is `lease` or `return`) within the call deadline.
    async fn invoke_lease(
        &self,
        operation: &str,
        buckets: &[BucketRequest],
        requests: u64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut invocation = self.lease_script.prepare_invoke();
        invocation.arg(operation).arg(requests);
        for bucket in buckets {
            push_bucket(&mut invocation, bucket, bucket.hits.max(1));
        }
        tokio::time::timeout(self.timeout, self.connection.invoke(&invocation))
            .await
            .map_err(|_| timed_out(self.timeout))?
            .map_err(|e| store_error("Redis lease script failed", e))
    }
}

/// A bucket's key and its six script arguments (both scripts take the same ones).
fn push_bucket(invocation: &mut ScriptInvocation<'_>, bucket: &BucketRequest, hits: u64) {
    invocation
        .key(bucket.key.as_str())
        .arg(algorithm_code(bucket.spec.algorithm))
        .arg(bucket.spec.limit)
        .arg(bucket.spec.period_us)
        .arg(bucket.spec.burst)
        .arg(hits)
        .arg(if bucket.enforce { "1" } else { "0" });
}

fn timed_out(timeout: Duration) -> StoreError {
    StoreError::transient(format!(
        "Redis did not answer within {} ms",
        timeout.as_millis()
    ))
}

/// Checks a script reply's length.
fn expect_len(reply: &[i64], len: usize, buckets: usize) -> Result<(), StoreError> {
    if reply.len() == len {
        Ok(())
    } else {
        Err(StoreError::permanent(format!(
            "Redis script returned {} values for {buckets} buckets",
            reply.len()
        )))
    }
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// TCP_NODELAY: redis-rs leaves Nagle on by default, which adds up to 40 ms (delayed ACK) to
/// small pipelined writes.
fn low_latency_tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// `redis+cluster://a:1,b:2` -> `("redis", ["a:1", "b:2"])`.
fn cluster_nodes(url: &str) -> Option<(&'static str, impl Iterator<Item = &str>)> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
        ("redis", rest)
    } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
        ("rediss", rest)
    } else {
        return None;
    };
    Some((
        scheme,
        rest.split(',').map(str::trim).filter(|n| !n.is_empty()),
    ))
}

impl Store for RedisStore {
    #[tracing::instrument(level = "debug", skip_all, fields(buckets = buckets.len()))]
    async fn apply(&self, buckets: &[BucketRequest]) -> Result<Vec<BucketOutcome>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let Some(decisions) = &self.decisions else {
            let values =
                batch::invoke(&self.connection, &self.script, self.timeout, &[buckets]).await?;
            return Ok(batch::outcomes(&values));
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = batch::Job {
            buckets: buckets.to_vec(),
            reply,
        };
        let decided = async {
            decisions
                .send(job)
                .await
                .map_err(|_| StoreError::permanent("the Redis batching task has stopped"))?;
            answer
                .await
                .map_err(|_| StoreError::transient("the Redis batching task dropped a decision"))?
        };
        // The batch call has the same deadline; this one also bounds the wait in the queue.
        tokio::time::timeout(self.timeout.saturating_mul(2), decided)
            .await
            .map_err(|_| timed_out(self.timeout))?
    }

    #[tracing::instrument(level = "debug", skip_all, fields(buckets = buckets.len()))]
    async fn lease(
        &self,
        buckets: &[BucketRequest],
        want: u64,
    ) -> Result<LeaseOutcome, StoreError> {
        if buckets.is_empty() {
            return Ok(LeaseOutcome {
                granted: want,
                buckets: Vec::new(),
            });
        }
        let reply = self.invoke_lease("lease", buckets, want).await?;
        expect_len(&reply, 1 + buckets.len() * 4, buckets.len())?;
        Ok(LeaseOutcome {
            granted: non_negative(reply[0]),
            buckets: reply[1..]
                .chunks_exact(4)
                .map(|c| LeaseBucketOutcome {
                    remaining: non_negative(c[0]),
                    reset_ms: non_negative(c[1]),
                    next_token_ms: non_negative(c[2]),
                    empty_ms: non_negative(c[3]),
                })
                .collect(),
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(buckets = buckets.len()))]
    async fn give_back(
        &self,
        buckets: &[BucketRequest],
        requests: u64,
    ) -> Result<Vec<u64>, StoreError> {
        if buckets.is_empty() || requests == 0 {
            return Ok(vec![0; buckets.len()]);
        }
        let reply = self.invoke_lease("return", buckets, requests).await?;
        expect_len(&reply, buckets.len(), buckets.len())?;
        Ok(reply.into_iter().map(non_negative).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let ping = async {
            let cmd = redis::cmd("PING");
            match &self.connection {
                Connection::Single(m) => cmd.query_async::<String>(&mut m.clone()).await,
                Connection::Cluster(c) => cmd.query_async::<String>(&mut c.clone()).await,
            }
        };
        tokio::time::timeout(self.timeout.max(Duration::from_millis(250)), ping)
            .await
            .map_err(|_| StoreError::transient("Redis PING timed out"))?
            .map(|_| ())
            .map_err(|e| store_error("Redis PING failed", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_list_seed_nodes() {
        let (scheme, nodes) = cluster_nodes("redis+cluster://a:1, b:2,").unwrap();
        assert_eq!(scheme, "redis");
        assert_eq!(nodes.collect::<Vec<_>>(), ["a:1", "b:2"]);
        assert!(cluster_nodes("redis://a:1").is_none());
        assert_eq!(cluster_nodes("rediss+cluster://a:1").unwrap().0, "rediss");
    }
}
