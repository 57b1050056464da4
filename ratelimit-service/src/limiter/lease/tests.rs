use super::*;
use crate::limiter::LimiterOptions;
use crate::storage::memory::{ManualClock, MemoryStore};

const CONFIG: &str = r#"
domain: api
descriptors:
  - key: route
    rate_limit: { unit: second, requests_per_unit: 100, mode: leased, lease_size: 10, lease_ttl: 2s }
  - key: tenant
    rate_limit: { unit: minute, requests_per_unit: 1000, mode: leased, lease_ttl: 500ms }
  - key: tiny
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: small
    rate_limit: { unit: hour, requests_per_unit: 30, mode: leased }
  - key: internal
    rate_limit: { unlimited: true }
  - key: blocked
    rate_limit: { unit: second, requests_per_unit: 0 }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: hour, requests_per_unit: 1, mode: leased, lease_size: 1 }
  - key: named
    rate_limit: { unit: second, unit_multiplier: 10, requests_per_unit: 50, mode: leased, lease_size: 5, name: per_ten }
"#;

fn setup(cache: usize) -> (Limiter<MemoryStore>, ManualClock, Config) {
    let clock = ManualClock::new(1_700_000_000_000_000);
    let limiter = Limiter::new(
        MemoryStore::new(clock.clone()),
        cache,
        LimiterOptions::default(),
    );
    let config = Config::from_yaml_str("api.yaml", CONFIG).unwrap();
    (limiter, clock, config)
}

/// One instant for every call: the local cache's clock stands still, as the store's does.
fn now() -> Instant {
    static NOW: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *NOW.get_or_init(Instant::now)
}

fn lease_request(descriptors: &[&[(&str, &str)]], want: u64) -> LeaseRequest {
    LeaseRequest {
        domain: "api".into(),
        descriptors: descriptors
            .iter()
            .map(|d| Descriptor::from_pairs(d))
            .collect(),
        want,
        floor_divisor: 0,
    }
}

async fn lease(
    limiter: &Limiter<MemoryStore>,
    config: &Config,
    descriptors: &[&[(&str, &str)]],
    want: u64,
) -> LeaseDecision {
    limiter
        .lease(config, &lease_request(descriptors, want), now())
        .await
        .unwrap()
}

async fn give_back(
    limiter: &Limiter<MemoryStore>,
    config: &Config,
    descriptors: &[&[(&str, &str)]],
    tokens: u64,
) -> ReturnDecision {
    let request = ReturnRequest {
        domain: "api".into(),
        descriptors: descriptors
            .iter()
            .map(|d| Descriptor::from_pairs(d))
            .collect(),
        tokens,
    };
    limiter.give_back(config, &request).await.unwrap()
}

#[tokio::test]
async fn unknown_and_unlimited_descriptors_are_unlimited_without_a_store_call() {
    let (limiter, _, config) = setup(0);
    let mut other = lease_request(&[&[("route", "a")]], 5);
    other.domain = "nope".into();
    let d = limiter.lease(&config, &other, now()).await.unwrap();
    assert_eq!(d.mode, LeaseMode::Unlimited);
    assert_eq!(d.expires_in_ms, 5000, "default lease ttl");
    let d = lease(
        &limiter,
        &config,
        &[&[("internal", "x")], &[("nothing", "y")]],
        5,
    )
    .await;
    assert_eq!(d.mode, LeaseMode::Unlimited);
    assert_eq!((d.granted, d.lease_size, d.store_called), (0, 0, false));
    assert_eq!(d.expires_in_ms, 500, "the domain's smallest lease_ttl");
    assert!(d.limits.is_empty());
    assert!(limiter.store().is_empty());
}

#[tokio::test]
async fn leased_limits_grant_up_to_the_smallest_lease_size() {
    let (limiter, _, config) = setup(0);
    let d = lease(
        &limiter,
        &config,
        &[&[("route", "r")], &[("tenant", "t")]],
        500,
    )
    .await;
    assert_eq!(d.mode, LeaseMode::Leased);
    assert_eq!(d.granted, 10, "route's lease size 10 < tenant's default 50");
    assert_eq!(d.lease_size, 10);
    assert_eq!(
        d.expires_in_ms, 500,
        "the smallest lease_ttl of the matched limits"
    );
    assert_eq!(d.retry_after_ms, 0);
    assert_eq!(d.limits.len(), 2);
    assert_eq!(
        d.limits[0],
        LimitState {
            name: "route=r".into(),
            requests_per_unit: 100,
            unit_seconds: 1,
            remaining: 90,
            reset_ms: 100,
            next_token_ms: 0,
        }
    );
    assert_eq!(d.limits[1].remaining, 990);
    let d = lease(&limiter, &config, &[&[("tenant", "t")]], 3).await;
    assert_eq!((d.granted, d.lease_size), (3, 50), "want caps the grant");
    assert_eq!(d.limits[0].remaining, 987);
    let d = lease(&limiter, &config, &[&[("named", "n")]], 100).await;
    assert_eq!(d.limits[0].name, "per_ten");
    assert_eq!(d.limits[0].unit_seconds, 10);
}

#[tokio::test]
async fn exact_limits_grant_one_token_and_lease_size_one_is_exact() {
    let (limiter, _, config) = setup(0);
    let d = lease(
        &limiter,
        &config,
        &[&[("route", "r")], &[("tiny", "t")]],
        10,
    )
    .await;
    assert_eq!(d.mode, LeaseMode::Exact);
    assert_eq!((d.granted, d.lease_size), (1, 1));
    assert_eq!(
        d.limits[0].remaining, 99,
        "the leased limit was charged one too"
    );
    // `small`: 30/hour, leased, default lease size max(1, 30/20) = 1: exact.
    for expected in [1, 1, 1] {
        let d = lease(&limiter, &config, &[&[("tiny", "u")]], 5).await;
        assert_eq!(d.granted, expected);
    }
    let d = lease(&limiter, &config, &[&[("tiny", "u")]], 5).await;
    assert_eq!(d.granted, 0, "3 per minute, exactly");
    assert_eq!(d.retry_after_ms, 20_000, "one token every 20 s");
    let d = lease(&limiter, &config, &[&[("small", "s")]], 5).await;
    assert_eq!((d.mode, d.granted), (LeaseMode::Exact, 1));
}

#[tokio::test]
async fn an_empty_bucket_grants_nothing_and_charges_no_other_bucket() {
    let (limiter, clock, config) = setup(0);
    for _ in 0..3 {
        lease(&limiter, &config, &[&[("tiny", "a")]], 1).await;
    }
    let d = lease(&limiter, &config, &[&[("route", "r")], &[("tiny", "a")]], 1).await;
    assert_eq!(d.granted, 0);
    assert_eq!(d.limits[0].remaining, 100, "route not charged");
    assert_eq!(d.limits[0].next_token_ms, 0);
    assert_eq!(d.limits[1].next_token_ms, 20_000);
    assert_eq!(d.retry_after_ms, 20_000);
    clock.advance_us(20_000_000);
    let d = lease(&limiter, &config, &[&[("route", "r")], &[("tiny", "a")]], 1).await;
    assert_eq!(d.granted, 1);
}

#[tokio::test]
async fn zero_limits_refuse_without_the_store_and_shadow_never_limits() {
    let (limiter, _, config) = setup(0);
    let d = lease(
        &limiter,
        &config,
        &[&[("route", "r")], &[("blocked", "b")]],
        5,
    )
    .await;
    assert_eq!(d.granted, 0);
    assert!(!d.store_called);
    assert_eq!(d.retry_after_ms, 1000, "the zero limit's period");
    assert!(limiter.store().is_empty());
    for _ in 0..3 {
        let d = lease(
            &limiter,
            &config,
            &[&[("shadow", "s")], &[("route", "q")]],
            1,
        )
        .await;
        assert_eq!(d.granted, 1);
        assert_eq!(
            d.mode,
            LeaseMode::Exact,
            "the shadow limit's lease size is 1"
        );
        assert_eq!(d.limits.len(), 1, "shadow limits are not reported");
    }
}

#[tokio::test]
async fn the_local_cache_refuses_an_empty_bucket_without_the_store() {
    let (limiter, _, config) = setup(100);
    for _ in 0..3 {
        lease(&limiter, &config, &[&[("tiny", "c")]], 1).await;
    }
    let d = lease(&limiter, &config, &[&[("route", "r")], &[("tiny", "c")]], 1).await;
    assert_eq!(d.granted, 0);
    assert!(!d.store_called);
    assert_eq!(d.limits[1].next_token_ms, 20_000);
    assert_eq!(d.retry_after_ms, 20_000);
}

#[tokio::test]
async fn return_refills_leased_buckets_only() {
    let (limiter, _, config) = setup(100);
    let d = lease(&limiter, &config, &[&[("route", "r")]], 10).await;
    assert_eq!(d.limits[0].remaining, 90);
    let back = give_back(&limiter, &config, &[&[("route", "r")]], 4).await;
    assert_eq!(back.returned, 4);
    let d = lease(&limiter, &config, &[&[("route", "r")]], 1).await;
    assert_eq!(d.limits[0].remaining, 93);
    let back = give_back(&limiter, &config, &[&[("route", "r")]], 50).await;
    assert_eq!(back.returned, 7, "capped at the capacity");
    for _ in 0..3 {
        lease(&limiter, &config, &[&[("tiny", "x")]], 1).await;
    }
    let back = give_back(&limiter, &config, &[&[("tiny", "x")]], 3).await;
    assert_eq!(
        back,
        ReturnDecision {
            returned: 0,
            store_called: false
        }
    );
    let d = lease(&limiter, &config, &[&[("tiny", "x")]], 1).await;
    assert_eq!(d.granted, 0, "exact tokens are never given back");
    let back = give_back(&limiter, &config, &[&[("internal", "x")]], 3).await;
    assert_eq!(back.returned, 0);
}

#[tokio::test]
async fn return_clears_the_local_cache_of_its_buckets() {
    let (limiter, _, config) = setup(100);
    for _ in 0..10 {
        lease(&limiter, &config, &[&[("route", "c")]], 10).await;
    }
    let d = lease(&limiter, &config, &[&[("route", "c")]], 10).await;
    assert_eq!(d.granted, 0);
    assert!(!d.store_called, "cached as empty");
    give_back(&limiter, &config, &[&[("route", "c")]], 5).await;
    let d = lease(&limiter, &config, &[&[("route", "c")]], 10).await;
    assert_eq!(d.granted, 5, "the given-back tokens are leased again");
    assert!(d.store_called);
}

#[tokio::test]
async fn repeated_descriptors_cost_their_bucket_once_each() {
    let (limiter, _, config) = setup(0);
    let d = lease(
        &limiter,
        &config,
        &[&[("route", "d")], &[("route", "d")]],
        10,
    )
    .await;
    assert_eq!(d.granted, 10);
    assert_eq!(
        d.limits[0].remaining, 80,
        "each request charges the bucket twice"
    );
}

#[tokio::test]
async fn want_zero_and_bad_requests_are_invalid() {
    let (limiter, _, config) = setup(0);
    let invalid = |r: Result<LeaseDecision, LimitError>| match r {
        Err(LimitError::InvalidRequest(m)) => m,
        other => panic!("{other:?}"),
    };
    let zero = lease_request(&[&[("route", "r")]], 0);
    let message = invalid(limiter.lease(&config, &zero, now()).await);
    assert_eq!(message, "want must be at least 1");
    let empty = lease_request(&[], 1);
    let message = invalid(limiter.lease(&config, &empty, now()).await);
    assert_eq!(message, "rate limit descriptor list must not be empty");
}
