//! One scenario suite, run against every store: in memory, a real Redis, and a Redis Cluster.
//! The scenarios use real time (the Redis store reads Redis `TIME`), so limits are chosen to
//! not refill during a test unless the scenario is about refill. The leased-quota scenarios
//! (Lease and Return on the same buckets) are in `lease.rs`.
// Test crate: helpers outside #[test] fns may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod lease;

use lease::*;
use test_harness::redis as redis_fixture;

use ratelimit_service::config::Config;
use ratelimit_service::limiter::{Code, Decision, Descriptor, Limiter, LimiterOptions, Request};
use ratelimit_service::storage::memory::{MemoryStore, SystemClock};
use ratelimit_service::storage::redis::RedisStore;
use ratelimit_service::storage::Store;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
domain: DOMAIN
descriptors:
  - key: hourly
    rate_limit: { unit: hour, requests_per_unit: 5 }
  - key: big
    rate_limit: { unit: hour, requests_per_unit: 100 }
  - key: fixed
    rate_limit: { unit: hour, requests_per_unit: 3, algorithm: fixed_window }
  - key: sliding
    rate_limit: { unit: hour, requests_per_unit: 3, algorithm: sliding_window }
  - key: fast
    rate_limit: { unit: second, requests_per_unit: 10 }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: tenant
    rate_limits:
      - { unit: second, unit_multiplier: 3600, requests_per_unit: 100 }
      - { unit: day, requests_per_unit: 2, algorithm: fixed_window, name: daily }
  - key: pool
    rate_limit: { unit: hour, requests_per_unit: 100, mode: leased, lease_size: 40 }
  - key: pool_small
    rate_limit: { unit: hour, requests_per_unit: 10, mode: leased, lease_size: 10 }
  - key: pool_fixed
    rate_limit: { unit: hour, requests_per_unit: 30, algorithm: fixed_window, mode: leased, lease_size: 30 }
  - key: pool_sliding
    rate_limit: { unit: hour, requests_per_unit: 30, algorithm: sliding_window, mode: leased, lease_size: 30 }
  - key: pool_shared
    rate_limit: { unit: hour, requests_per_unit: 50, mode: leased, lease_size: 3 }
"#;

/// A domain nobody else uses, so scenarios sharing one Redis never meet.
fn unique_domain(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos}", std::process::id())
}

struct Harness<S> {
    limiter: Limiter<S>,
    config: Config,
    domain: String,
}

impl<S: Store> Harness<S> {
    fn new(store: S, name: &str) -> Self {
        let domain = unique_domain(name);
        let config =
            Config::from_yaml_str("scenario.yaml", &CONFIG.replace("DOMAIN", &domain)).unwrap();
        Harness {
            // The local cache is off: scenarios observe the store itself.
            limiter: Limiter::new(store, 0, LimiterOptions::default()),
            config,
            domain,
        }
    }

    async fn call(&self, descriptors: &[&[(&str, &str)]], hits: u64) -> Decision {
        let request = Request {
            domain: self.domain.clone(),
            hits_addend: hits,
            descriptors: descriptors
                .iter()
                .map(|entries| Descriptor::from_pairs(entries))
                .collect(),
        };
        self.limiter
            .should_rate_limit(&self.config, &request, Instant::now())
            .await
            .unwrap()
    }

    async fn admitted(&self, descriptors: &[&[(&str, &str)]], attempts: usize) -> usize {
        let mut admitted = 0;
        for _ in 0..attempts {
            if self.call(descriptors, 1).await.overall == Code::Ok {
                admitted += 1;
            }
        }
        admitted
    }
}

async fn token_bucket_admits_its_capacity_then_rejects<S: Store>(store: S) {
    let h = Harness::new(store, "tb");
    for expected in (0..5).rev() {
        let d = h.call(&[&[("hourly", "a")]], 1).await;
        assert_eq!(d.overall, Code::Ok);
        assert_eq!(d.statuses[0].limit_remaining, expected);
    }
    let d = h.call(&[&[("hourly", "a")]], 1).await;
    assert_eq!(d.overall, Code::OverLimit);
    assert_eq!(d.statuses[0].limit_remaining, 0);
    // 5 per hour: the next token is 12 minutes away.
    let (name, value) = &d.response_headers[0];
    assert_eq!(*name, "retry-after");
    let secs: u64 = value.parse().unwrap();
    assert!((715..=720).contains(&secs), "retry-after {secs}");
    // Other values of the key-only node have their own buckets.
    assert_eq!(h.admitted(&[&[("hourly", "b")]], 7).await, 5);
}

async fn rejected_request_consumes_nothing_from_other_descriptors<S: Store>(store: S) {
    let h = Harness::new(store, "atomic");
    assert_eq!(h.admitted(&[&[("hourly", "x")]], 5).await, 5);
    for _ in 0..3 {
        let d = h.call(&[&[("big", "y")], &[("hourly", "x")]], 1).await;
        assert_eq!(d.overall, Code::OverLimit);
        assert_eq!(d.statuses[0].code, Code::Ok);
        assert_eq!(d.statuses[1].code, Code::OverLimit);
    }
    let d = h.call(&[&[("big", "y")]], 1).await;
    assert_eq!(
        d.statuses[0].limit_remaining, 99,
        "only this call charged `big`"
    );
}

async fn fixed_window_counts_per_window<S: Store>(store: S) {
    let h = Harness::new(store, "fixed");
    assert_eq!(h.admitted(&[&[("fixed", "a")]], 5).await, 3);
    let d = h.call(&[&[("fixed", "a")]], 1).await;
    assert_eq!(d.overall, Code::OverLimit);
    let reset = d.statuses[0].duration_until_reset.unwrap();
    assert!(reset <= Duration::from_secs(3600) && reset > Duration::ZERO);
}

async fn sliding_window_counts_per_period<S: Store>(store: S) {
    let h = Harness::new(store, "sliding");
    assert_eq!(h.admitted(&[&[("sliding", "a")]], 5).await, 3);
    assert_eq!(
        h.call(&[&[("sliding", "a")]], 1).await.overall,
        Code::OverLimit
    );
}

async fn tokens_refill_over_time<S: Store>(store: S) {
    let h = Harness::new(store, "refill");
    let started = Instant::now();
    let mut admitted = h.admitted(&[&[("fast", "a")]], 10).await;
    assert_eq!(admitted, 10);
    tokio::time::sleep(Duration::from_millis(350)).await;
    admitted += h.admitted(&[&[("fast", "a")]], 10).await;
    // 10 per second: at most 10 + 10 * elapsed, at least the 3 due after 350 ms.
    let ceiling = 10 + (started.elapsed().as_secs_f64() * 10.0).floor() as usize;
    assert!(
        admitted >= 13 && admitted <= ceiling,
        "admitted {admitted}, ceiling {ceiling}"
    );
}

async fn hits_addend_charges_several_and_huge_ones_are_rejected<S: Store>(store: S) {
    let h = Harness::new(store, "hits");
    let d = h.call(&[&[("hourly", "a")]], 3).await;
    assert_eq!(d.statuses[0].limit_remaining, 2);
    let d = h.call(&[&[("hourly", "a")]], 3).await;
    assert_eq!(d.overall, Code::OverLimit);
    assert_eq!(
        d.statuses[0].limit_remaining, 2,
        "rejected hits consume nothing"
    );
    let d = h.call(&[&[("hourly", "a")]], u64::MAX).await;
    assert_eq!(d.overall, Code::OverLimit);
    let d = h.call(&[&[("hourly", "a")]], 2).await;
    assert_eq!(d.overall, Code::Ok);
    assert_eq!(d.statuses[0].limit_remaining, 0);
}

async fn shadow_mode_is_counted_but_admitted<S: Store>(store: S) {
    let h = Harness::new(store, "shadow");
    let first = h.call(&[&[("shadow", "a")]], 1).await;
    assert!(!first.observations[0].shadow_over_limit);
    for _ in 0..3 {
        let d = h.call(&[&[("shadow", "a")], &[("big", "a")]], 1).await;
        assert_eq!(d.overall, Code::Ok);
        assert!(d.observations[0].shadow_over_limit);
    }
    let d = h.call(&[&[("big", "a")]], 1).await;
    assert_eq!(d.statuses[0].limit_remaining, 96);
}

async fn several_limits_on_one_key_all_apply<S: Store>(store: S) {
    let h = Harness::new(store, "multi");
    assert_eq!(h.admitted(&[&[("tenant", "acme")]], 4).await, 2);
    let d = h.call(&[&[("tenant", "acme")]], 1).await;
    assert_eq!(d.overall, Code::OverLimit);
    let limit = d.statuses[0].current_limit.as_ref().unwrap();
    assert_eq!(limit.name.as_deref(), Some("daily"));
    // The hourly token bucket was charged only for the 2 admitted requests.
    let d = h.call(&[&[("tenant", "acme")]], 0).await;
    assert_eq!(d.observations[0].hits, 0);
}

/// Decisions that arrive together (the Redis store sends them to Redis as one script call)
/// stay exact and atomic: 200 callers at once, each on a shared bucket of 100 and on one of 10
/// users' buckets of 5. Exactly 50 pass, and the shared bucket is charged by those 50 only (a
/// decision its user's bucket refused charged nothing, in the same batch as the others).
async fn concurrent_decisions_stay_exact_and_atomic<S: Store>(store: S) {
    let h = std::sync::Arc::new(Harness::new(store, "race"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let h = std::sync::Arc::clone(&h);
            tokio::spawn(async move {
                let user = format!("u{}", i % 10);
                let d = h.call(&[&[("big", "hot")], &[("hourly", &user)]], 1).await;
                d.overall == Code::Ok
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    // hourly refills one request per 720 s, big one per 36 s: none within a test this short.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "too slow to be exact"
    );
    assert_eq!(admitted, 50, "10 users x 5");
    let d = h.call(&[&[("big", "hot")]], 1).await;
    assert_eq!(d.overall, Code::Ok);
    assert_eq!(
        d.statuses[0].limit_remaining, 49,
        "big was charged by the 50 admitted decisions and this one"
    );
}

async fn many_descriptors_in_one_call<S: Store>(store: S) {
    let h = Harness::new(store, "many");
    let values: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
    let entries: Vec<[(&str, &str); 1]> = values.iter().map(|v| [("hourly", v.as_str())]).collect();
    let descriptors: Vec<&[(&str, &str)]> = entries.iter().map(|e| &e[..]).collect();
    for _ in 0..5 {
        assert_eq!(h.call(&descriptors, 1).await.overall, Code::Ok);
    }
    let d = h.call(&descriptors, 1).await;
    assert_eq!(d.overall, Code::OverLimit);
    assert_eq!(d.statuses.len(), 50);
    assert!(d.statuses.iter().all(|s| s.code == Code::OverLimit));
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(MemoryStore::new(SystemClock)).await;
                }
            )*
        }

        mod redis {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = redis_fixture::RedisServer::start().unwrap();
                    let store = RedisStore::connect(&server.url(), Duration::from_secs(2))
                        .await
                        .unwrap();
                    super::$name(store).await;
                }
            )*
        }

        mod redis_cluster {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let cluster = super::cluster();
                    let store = RedisStore::connect(&cluster.url(), Duration::from_secs(2))
                        .await
                        .unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

/// One cluster shared by the cluster scenarios (starting one takes a second or two). It is
/// torn down when the last scenario drops its handle.
fn cluster() -> std::sync::Arc<redis_fixture::RedisCluster> {
    use std::sync::{Arc, Mutex, Weak};
    static SHARED: Mutex<Weak<redis_fixture::RedisCluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(redis_fixture::RedisCluster::start().unwrap());
    *shared = Arc::downgrade(&cluster);
    cluster
}

scenarios!(
    token_bucket_admits_its_capacity_then_rejects,
    rejected_request_consumes_nothing_from_other_descriptors,
    fixed_window_counts_per_window,
    sliding_window_counts_per_period,
    tokens_refill_over_time,
    hits_addend_charges_several_and_huge_ones_are_rejected,
    shadow_mode_is_counted_but_admitted,
    several_limits_on_one_key_all_apply,
    many_descriptors_in_one_call,
    concurrent_decisions_stay_exact_and_atomic,
    lease_grants_up_to_want_and_the_lease_size,
    lease_takes_from_the_bucket_should_rate_limit_charges,
    lease_grants_the_minimum_available_to_every_bucket,
    lease_of_an_empty_bucket_grants_nothing_charges_nothing_and_says_when,
    lease_with_an_exact_limit_grants_at_most_one,
    return_restores_tokens_capped_at_capacity,
    return_to_window_buckets_lowers_the_count_not_below_zero,
    concurrent_leases_never_grant_more_than_the_bucket_holds,
);

#[tokio::test]
async fn redis_over_a_unix_socket() {
    let server = redis_fixture::RedisServer::start().unwrap();
    let store = RedisStore::connect(&server.unix_url(), Duration::from_secs(2))
        .await
        .unwrap();
    token_bucket_admits_its_capacity_then_rejects(store).await;
}

#[tokio::test]
async fn redis_script_is_reloaded_after_script_flush() {
    let server = redis_fixture::RedisServer::start().unwrap();
    let store = RedisStore::connect(&server.url(), Duration::from_secs(2))
        .await
        .unwrap();
    let h = Harness::new(store, "noscript");
    assert_eq!(h.call(&[&[("hourly", "a")]], 1).await.overall, Code::Ok);
    assert!(server.command("SCRIPT FLUSH").unwrap().starts_with("+OK"));
    let d = h.call(&[&[("hourly", "a")]], 1).await;
    assert_eq!(
        d.statuses[0].limit_remaining, 3,
        "NOSCRIPT fell back to loading it"
    );
}

/// Decisions that arrive while a script call is in flight go out together: 200 at once take
/// far fewer than 200 calls (each call carries every decision queued when it leaves); with
/// `--redis-batch-limit 1`, one call each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_coalesces_concurrent_decisions_into_fewer_script_calls() {
    let server = redis_fixture::RedisServer::start().unwrap();
    let calls = concurrent_script_calls(&server, 128).await;
    assert!(
        (1..=100).contains(&calls),
        "200 concurrent decisions took {calls} script calls"
    );
    assert_eq!(
        concurrent_script_calls(&server, 1).await,
        200,
        "batch limit 1"
    );
}

/// Script calls that 200 concurrent decisions took with `batch_limit`.
async fn concurrent_script_calls(server: &redis_fixture::RedisServer, batch_limit: usize) -> u64 {
    let store = RedisStore::connect_with(&server.url(), Duration::from_secs(2), batch_limit)
        .await
        .unwrap();
    let h = std::sync::Arc::new(Harness::new(store, "coalesce"));
    // The script is loaded before counting.
    h.call(&[&[("big", "warm")]], 1).await;
    let before = server.script_calls().unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let h = std::sync::Arc::clone(&h);
            tokio::spawn(async move { h.call(&[&[("big", &format!("k{}", i % 50))]], 1).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().overall, Code::Ok);
    }
    server.script_calls().unwrap() - before
}

#[tokio::test]
async fn redis_keys_follow_the_documented_scheme_and_expire() {
    let server = redis_fixture::RedisServer::start().unwrap();
    let store = RedisStore::connect(&server.url(), Duration::from_secs(2))
        .await
        .unwrap();
    let h = Harness::new(store, "keys");
    h.call(&[&[("fixed", "a|b")]], 1).await;
    let key = format!("rl:{{{}}}:f3600:fixed=a%7Cb", h.domain);
    let ttl = server.command(&format!("PTTL {key}")).unwrap();
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0 && ttl <= 3_601_000, "ttl {ttl}");
}
