//! Leased-quota scenarios (Lease and Return), run by `scenarios.rs` against every store. The
//! `pool*` limits of the shared config are leased and refill at most one token every 36 s, so
//! nothing refills during a scenario unless it says so.

use super::Harness;
use ratelimit_service::limiter::{
    Code, Descriptor, LeaseDecision, LeaseMode, LeaseRequest, ReturnRequest,
};
use ratelimit_service::storage::Store;
use std::sync::Arc;
use std::time::Instant;

impl<S: Store> Harness<S> {
    async fn lease(&self, descriptors: &[&[(&str, &str)]], want: u64) -> LeaseDecision {
        let request = LeaseRequest {
            domain: self.domain.clone(),
            descriptors: descriptors
                .iter()
                .map(|entries| Descriptor::from_pairs(entries))
                .collect(),
            want,
            floor_divisor: 0,
        };
        self.limiter
            .lease(&self.config, &request, Instant::now())
            .await
            .unwrap()
    }

    async fn give_back(&self, descriptors: &[&[(&str, &str)]], tokens: u64) -> u64 {
        let request = ReturnRequest {
            domain: self.domain.clone(),
            descriptors: descriptors
                .iter()
                .map(|entries| Descriptor::from_pairs(entries))
                .collect(),
            tokens,
        };
        self.limiter
            .give_back(&self.config, &request)
            .await
            .unwrap()
            .returned
    }
}

pub(crate) async fn lease_grants_up_to_want_and_the_lease_size<S: Store>(store: S) {
    let h = Harness::new(store, "lease-want");
    let d = h.lease(&[&[("pool", "a")]], 7).await;
    assert_eq!(
        (d.mode, d.granted, d.lease_size),
        (LeaseMode::Leased, 7, 40)
    );
    assert_eq!(d.retry_after_ms, 0);
    assert_eq!(d.expires_in_ms, 5000, "the default lease_ttl");
    let state = &d.limits[0];
    assert_eq!(state.name, "pool=a");
    assert_eq!((state.requests_per_unit, state.unit_seconds), (100, 3600));
    assert_eq!(state.remaining, 93);
    assert_eq!(state.next_token_ms, 0);
    // 7 tokens at one per 36 s: full again in 252 s.
    assert!((251_000..=252_000).contains(&state.reset_ms), "{state:?}");
    let d = h.lease(&[&[("pool", "a")]], 1000).await;
    assert_eq!(d.granted, 40, "capped at the lease size");
    assert_eq!(d.limits[0].remaining, 53);
}

pub(crate) async fn lease_takes_from_the_bucket_should_rate_limit_charges<S: Store>(store: S) {
    let h = Harness::new(store, "lease-shared");
    assert_eq!(h.lease(&[&[("pool", "s")]], 40).await.granted, 40);
    let d = h.call(&[&[("pool", "s")]], 1).await;
    assert_eq!(d.overall, Code::Ok);
    assert_eq!(d.statuses[0].limit_remaining, 59);
    assert_eq!(h.call(&[&[("pool", "s")]], 59).await.overall, Code::Ok);
    let d = h.lease(&[&[("pool", "s")]], 40).await;
    assert_eq!(d.granted, 0, "ShouldRateLimit emptied it");
}

pub(crate) async fn lease_grants_the_minimum_available_to_every_bucket<S: Store>(store: S) {
    let h = Harness::new(store, "lease-min");
    assert_eq!(h.lease(&[&[("pool_small", "m")]], 6).await.granted, 6);
    let d = h
        .lease(&[&[("pool", "m")], &[("pool_small", "m")]], 10)
        .await;
    assert_eq!(d.granted, 4, "pool_small holds 4");
    assert_eq!(
        d.limits[0].remaining, 96,
        "pool charged the grant, not the want"
    );
    assert_eq!(d.limits[1].remaining, 0);
    assert!(d.limits[1].next_token_ms > 0);
}

pub(crate) async fn lease_of_an_empty_bucket_grants_nothing_charges_nothing_and_says_when<
    S: Store,
>(
    store: S,
) {
    let h = Harness::new(store, "lease-empty");
    assert_eq!(h.lease(&[&[("pool_small", "e")]], 10).await.granted, 10);
    for _ in 0..3 {
        let d = h
            .lease(&[&[("pool", "e")], &[("pool_small", "e")]], 5)
            .await;
        assert_eq!(d.granted, 0);
        assert_eq!(d.limits[0].remaining, 100, "pool never charged");
        assert_eq!(d.limits[0].next_token_ms, 0);
        // 10 per hour: the next token is 6 minutes away.
        assert!(
            (359_000..=360_000).contains(&d.retry_after_ms),
            "retry after {}",
            d.retry_after_ms
        );
        assert_eq!(d.limits[1].next_token_ms, d.retry_after_ms);
    }
    let d = h.lease(&[&[("pool", "e")]], 5).await;
    assert_eq!(d.limits[0].remaining, 95, "only this grant charged pool");
}

pub(crate) async fn lease_with_an_exact_limit_grants_at_most_one<S: Store>(store: S) {
    let h = Harness::new(store, "lease-exact");
    for _ in 0..5 {
        let d = h.lease(&[&[("pool", "x")], &[("hourly", "x")]], 10).await;
        assert_eq!((d.mode, d.granted, d.lease_size), (LeaseMode::Exact, 1, 1));
    }
    let d = h.lease(&[&[("pool", "x")], &[("hourly", "x")]], 10).await;
    assert_eq!(d.granted, 0, "hourly admits 5 per hour, exactly");
    assert_eq!(d.limits[0].remaining, 95);
    assert_eq!(
        h.give_back(&[&[("hourly", "x")]], 1).await,
        0,
        "exact: never returned"
    );
    let d = h.lease(&[&[("unknown", "x")]], 10).await;
    assert_eq!((d.mode, d.granted), (LeaseMode::Unlimited, 0));
}

pub(crate) async fn return_restores_tokens_capped_at_capacity<S: Store>(store: S) {
    let h = Harness::new(store, "return-tb");
    assert_eq!(
        h.give_back(&[&[("pool", "r")]], 5).await,
        0,
        "a fresh bucket is full"
    );
    assert_eq!(h.lease(&[&[("pool", "r")]], 40).await.granted, 40);
    assert_eq!(h.give_back(&[&[("pool", "r")]], 15).await, 15);
    assert_eq!(
        h.lease(&[&[("pool", "r")]], 1).await.limits[0].remaining,
        74
    );
    // 26 tokens short of full (less the fraction refilled since): a Return of 100 fills it.
    let returned = h.give_back(&[&[("pool", "r")]], 100).await;
    assert!((25..=26).contains(&returned), "returned {returned}");
    let mut leased = 0;
    for _ in 0..4 {
        leased += h.lease(&[&[("pool", "r")]], 40).await.granted;
    }
    assert_eq!(leased, 100, "never above the capacity");
}

pub(crate) async fn return_to_window_buckets_lowers_the_count_not_below_zero<S: Store>(store: S) {
    let h = Harness::new(store, "return-win");
    for key in ["pool_fixed", "pool_sliding"] {
        let d: &[&[(&str, &str)]] = &[&[(key, "w")]];
        assert_eq!(h.lease(d, 30).await.granted, 30, "{key}");
        assert_eq!(h.give_back(d, 10).await, 10, "{key}");
        assert_eq!(h.lease(d, 30).await.granted, 10, "{key}");
        assert_eq!(
            h.give_back(d, 100).await,
            30,
            "{key}: down to zero, not below"
        );
        assert_eq!(h.lease(d, 30).await.granted, 30, "{key}");
        assert_eq!(h.lease(d, 30).await.granted, 0, "{key}");
    }
}

pub(crate) async fn concurrent_leases_never_grant_more_than_the_bucket_holds<S: Store>(store: S) {
    let h = Arc::new(Harness::new(store, "lease-race"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.lease(&[&[("pool_shared", "hot")]], 3).await.granted })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    // 50 per hour: one more token every 72 s of the test.
    let refill = started.elapsed().as_secs() / 72;
    assert!(total <= 50 + refill, "granted {total} of 50");
    assert!(
        total >= 50,
        "64 callers wanting 3 each took every token: {total}"
    );
}
