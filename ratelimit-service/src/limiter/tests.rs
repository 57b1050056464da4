use super::*;
use crate::storage::memory::{ManualClock, MemoryStore};

const CONFIG: &str = r#"
domain: api
descriptors:
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: plan
    value: free
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: internal
    rate_limit: { unlimited: true }
  - key: blocked
    rate_limit: { unit: second, requests_per_unit: 0 }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: legacy
    rate_limit: { unit: hour, requests_per_unit: 1, name: old }
  - key: modern
    replaces: [ { name: old } ]
    rate_limit: { unit: hour, requests_per_unit: 100 }
"#;

fn setup(headers: bool, cache: usize) -> (Limiter<MemoryStore>, ManualClock, Config) {
    let clock = ManualClock::new(1_700_000_000_000_000);
    let limiter = Limiter::new(
        MemoryStore::new(clock.clone()),
        cache,
        LimiterOptions {
            ratelimit_headers: headers,
        },
    );
    (
        limiter,
        clock,
        Config::from_yaml_str("api.yaml", CONFIG).unwrap(),
    )
}

fn descriptor(entries: &[(&str, &str)]) -> Descriptor {
    Descriptor::from_pairs(entries)
}

fn request(descriptors: Vec<Descriptor>) -> Request {
    Request {
        domain: "api".into(),
        descriptors,
        hits_addend: 1,
    }
}

async fn decide(limiter: &Limiter<MemoryStore>, config: &Config, req: &Request) -> Decision {
    limiter
        .should_rate_limit(config, req, Instant::now())
        .await
        .unwrap()
}

#[tokio::test]
async fn every_descriptor_gets_a_status_and_unmatched_ones_are_ok() {
    let (limiter, _, config) = setup(false, 0);
    let req = request(vec![
        descriptor(&[("nothing", "here")]),
        descriptor(&[("user", "alice")]),
    ]);
    let d = decide(&limiter, &config, &req).await;
    assert_eq!(d.overall, Code::Ok);
    assert_eq!(d.statuses.len(), 2);
    assert_eq!(d.statuses[0], DescriptorStatus::unmatched());
    let s = &d.statuses[1];
    assert_eq!(s.limit_remaining, 2);
    assert_eq!(s.current_limit.as_ref().unwrap().requests_per_unit, 3);
    assert_eq!(s.current_limit.as_ref().unwrap().unit, Unit::Minute);
    assert_eq!(s.duration_until_reset, Some(Duration::from_secs(20)));
}

#[tokio::test]
async fn over_limit_sets_retry_after_and_consumes_nothing_elsewhere() {
    let (limiter, clock, config) = setup(false, 0);
    let free = descriptor(&[("plan", "free")]);
    let user = descriptor(&[("user", "bob")]);
    let d = decide(&limiter, &config, &request(vec![free.clone()])).await;
    assert_eq!(d.overall, Code::Ok);
    let d = decide(
        &limiter,
        &config,
        &request(vec![user.clone(), free.clone()]),
    )
    .await;
    assert_eq!(d.overall, Code::OverLimit);
    assert_eq!(d.statuses[0].code, Code::Ok);
    assert_eq!(d.statuses[1].code, Code::OverLimit);
    assert_eq!(
        d.response_headers,
        vec![("retry-after", "3600".to_string())]
    );
    // bob's bucket was not charged by the rejected request.
    let d = decide(&limiter, &config, &request(vec![user])).await;
    assert_eq!(d.statuses[0].limit_remaining, 2);
    // One token every 20 s for 3/minute; free plan refills after an hour.
    clock.advance_us(3_600_000_000);
    let d = decide(&limiter, &config, &request(vec![free])).await;
    assert_eq!(d.overall, Code::Ok);
}

#[tokio::test]
async fn unlimited_never_calls_the_store_and_zero_always_rejects() {
    let (limiter, _, config) = setup(false, 0);
    for _ in 0..5 {
        let d = decide(
            &limiter,
            &config,
            &request(vec![descriptor(&[("internal", "x")])]),
        )
        .await;
        assert_eq!(d.overall, Code::Ok);
        assert!(!d.store_called);
        assert_eq!(d.statuses[0].limit_remaining, u32::MAX);
        assert!(d.statuses[0].current_limit.is_none());
    }
    let d = decide(
        &limiter,
        &config,
        &request(vec![
            descriptor(&[("blocked", "x")]),
            descriptor(&[("user", "z")]),
        ]),
    )
    .await;
    assert_eq!(d.overall, Code::OverLimit);
    assert!(!d.store_called);
    assert_eq!(d.response_headers, vec![("retry-after", "1".to_string())]);
    assert!(limiter.store().is_empty(), "nothing charged");
}

#[tokio::test]
async fn shadow_mode_counts_but_reports_ok() {
    let (limiter, _, config) = setup(false, 0);
    let req = request(vec![descriptor(&[("shadow", "s")])]);
    let first = decide(&limiter, &config, &req).await;
    assert!(!first.observations[0].shadow_over_limit);
    let second = decide(&limiter, &config, &req).await;
    assert_eq!(second.overall, Code::Ok);
    assert_eq!(second.statuses[0].code, Code::Ok);
    assert!(second.observations[0].shadow_over_limit);
    assert!(!second.observations[0].over_limit);
}

#[tokio::test]
async fn shadow_bucket_over_limit_does_not_block_enforced_ones() {
    let (limiter, _, config) = setup(false, 0);
    let shadow = descriptor(&[("shadow", "t")]);
    decide(&limiter, &config, &request(vec![shadow.clone()])).await;
    let user = descriptor(&[("user", "carol")]);
    let d = decide(&limiter, &config, &request(vec![shadow, user])).await;
    assert_eq!(d.overall, Code::Ok);
    assert_eq!(d.statuses[1].limit_remaining, 2, "enforced bucket charged");
}

#[tokio::test]
async fn hits_addend_default_override_and_check_only() {
    let (limiter, _, config) = setup(false, 0);
    let mut req = request(vec![descriptor(&[("user", "dave")])]);
    req.hits_addend = 2;
    let d = decide(&limiter, &config, &req).await;
    assert_eq!(d.statuses[0].limit_remaining, 1);
    let d = decide(&limiter, &config, &req).await;
    assert_eq!(d.overall, Code::OverLimit, "2 hits do not fit in 1 token");
    req.descriptors[0].hits_addend = Some(0);
    let d = decide(&limiter, &config, &req).await;
    assert_eq!(d.overall, Code::Ok, "check only: one more would fit");
    assert_eq!(d.statuses[0].limit_remaining, 1);
    req.descriptors[0].hits_addend = Some(u64::MAX);
    let d = decide(&limiter, &config, &req).await;
    assert_eq!(d.overall, Code::OverLimit);
    req.descriptors[0].hits_addend = Some(1);
    let d = decide(&limiter, &config, &req).await;
    assert_eq!(d.overall, Code::Ok, "huge request charged nothing");
}

#[tokio::test]
async fn duplicate_descriptors_share_one_bucket() {
    let (limiter, _, config) = setup(false, 0);
    let user = descriptor(&[("user", "erin")]);
    let d = decide(
        &limiter,
        &config,
        &request(vec![user.clone(), user.clone()]),
    )
    .await;
    assert_eq!(d.overall, Code::Ok);
    assert_eq!(d.statuses[0].limit_remaining, 1);
    let d = decide(&limiter, &config, &request(vec![user.clone(), user])).await;
    assert_eq!(d.overall, Code::OverLimit, "2 more hits, 1 token left");
}

#[tokio::test]
async fn limit_override_from_envoy_applies_in_known_domains_only() {
    let (limiter, _, config) = setup(false, 0);
    let mut over = descriptor(&[("anything", "x")]);
    over.limit_override = Some(LimitOverride {
        requests_per_unit: 1,
        unit: Unit::Day,
    });
    let d = decide(&limiter, &config, &request(vec![over.clone()])).await;
    assert_eq!(
        d.statuses[0].current_limit.as_ref().unwrap().unit,
        Unit::Day
    );
    assert_eq!(d.observations[0].label.as_deref(), Some("anything_x"));
    let d = decide(&limiter, &config, &request(vec![over.clone()])).await;
    assert_eq!(d.overall, Code::OverLimit);
    let mut other_domain = request(vec![over]);
    other_domain.domain = "unknown".into();
    let d = decide(&limiter, &config, &other_domain).await;
    assert_eq!(d.overall, Code::Ok);
    assert!(!d.store_called);
}

#[tokio::test]
async fn replaces_drops_the_named_limit() {
    let (limiter, _, config) = setup(false, 0);
    let req = request(vec![
        descriptor(&[("legacy", "a")]),
        descriptor(&[("modern", "a")]),
    ]);
    for _ in 0..3 {
        let d = decide(&limiter, &config, &req).await;
        assert_eq!(d.overall, Code::Ok, "the 1/hour `old` limit is replaced");
        assert_eq!(d.statuses[0], DescriptorStatus::unmatched());
    }
}

#[tokio::test]
async fn ratelimit_headers_follow_the_tightest_limit() {
    let (limiter, _, config) = setup(true, 0);
    let req = request(vec![
        descriptor(&[("user", "frank")]),
        descriptor(&[("plan", "free")]),
    ]);
    let d = decide(&limiter, &config, &req).await;
    assert_eq!(
        d.response_headers,
        vec![
            ("ratelimit-limit", "1".to_string()),
            ("ratelimit-remaining", "0".to_string()),
            ("ratelimit-reset", "3600".to_string()),
        ]
    );
}

#[tokio::test]
async fn local_cache_answers_empty_buckets_until_the_next_token() {
    let (limiter, clock, config) = setup(false, 100);
    let req = request(vec![descriptor(&[("plan", "free")])]);
    let start = Instant::now();
    let d = limiter
        .should_rate_limit(&config, &req, start)
        .await
        .unwrap();
    assert!(d.store_called);
    let d = limiter
        .should_rate_limit(&config, &req, start)
        .await
        .unwrap();
    assert_eq!(d.overall, Code::OverLimit);
    assert!(!d.store_called);
    assert!(d.observations[0].cache_hit);
    // Once the token is due, the store is asked again.
    clock.advance_us(3_600_000_000);
    let later = start + Duration::from_secs(3600);
    let d = limiter
        .should_rate_limit(&config, &req, later)
        .await
        .unwrap();
    assert!(d.store_called);
    assert_eq!(d.overall, Code::Ok);
    limiter.clear_cache();
}

#[tokio::test]
async fn bad_requests_are_rejected_with_clear_messages() {
    let (limiter, _, config) = setup(false, 0);
    let check = |req: Request| {
        let limiter = &limiter;
        let config = &config;
        async move {
            match limiter
                .should_rate_limit(config, &req, Instant::now())
                .await
            {
                Err(LimitError::InvalidRequest(m)) => m,
                other => panic!("expected invalid request, got {other:?}"),
            }
        }
    };
    let mut empty_domain = request(vec![descriptor(&[("user", "a")])]);
    empty_domain.domain.clear();
    assert_eq!(
        check(empty_domain).await,
        "rate limit domain must not be empty"
    );
    assert_eq!(
        check(request(vec![])).await,
        "rate limit descriptor list must not be empty"
    );
    let many = request(vec![descriptor(&[("user", "a")]); 1000]);
    assert_eq!(
        check(many).await,
        "1000 descriptors exceed the maximum of 256"
    );
    let big = "x".repeat(64 * 1024);
    let huge = request(vec![descriptor(&[("user", big.as_str())])]);
    assert_eq!(
        check(huge).await,
        "descriptor keys and values total 65543 bytes, over the maximum of 65536"
    );
}

/// envoyproxy/ratelimit's TestConfigLimitOverride (basic_config.yaml): an override Envoy sends
/// applies only in a configured domain, reports the override as the limit, and counts under
/// the request's own entries, whatever the override's value.
#[tokio::test]
async fn envoyproxy_config_limit_override() {
    let (limiter, _, _) = setup(false, 0);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/envoyproxy-ratelimit/basic_config.yaml"
    );
    let config = Config::from_yaml_str(path, &std::fs::read_to_string(path).unwrap()).unwrap();
    let with_override = |subkey: &str, rpu: u32, unit: Unit| {
        let mut d = descriptor(&[("key1", "value1"), ("subkey1", subkey)]);
        d.limit_override = Some(LimitOverride {
            requests_per_unit: rpu,
            unit,
        });
        d
    };
    let mut unknown = request(vec![with_override("something", 10, Unit::Day)]);
    unknown.domain = "foo_domain".into();
    let d = decide(&limiter, &config, &unknown).await;
    assert!(d.statuses[0].current_limit.is_none() && d.observations.is_empty());
    let cases = [
        ("something", 10, Unit::Day, "key1_value1.subkey1_something"),
        ("something", 42, Unit::Hour, "key1_value1.subkey1_something"),
        (
            "something_else",
            42,
            Unit::Hour,
            "key1_value1.subkey1_something_else",
        ),
    ];
    for (subkey, rpu, unit, label) in cases {
        let mut req = request(vec![with_override(subkey, rpu, unit)]);
        req.domain = "test-domain".into();
        let d = decide(&limiter, &config, &req).await;
        let limit = d.statuses[0].current_limit.clone().unwrap();
        assert_eq!((limit.requests_per_unit, limit.unit), (rpu, unit));
        assert_eq!(d.observations[0].label.as_deref(), Some(label));
    }
}

#[tokio::test]
async fn share_threshold_charges_one_bucket_for_every_matching_value() {
    let (limiter, _, _) = setup(false, 0);
    let config = Config::from_yaml_str(
        "s.yaml",
        "domain: api
descriptors:
  - key: path
    value: /api/*
    share_threshold: true
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: user
    value: u*
    value_to_metric: true
    rate_limit: { unit: hour, requests_per_unit: 2 }
",
    )
    .unwrap();
    let call = |pairs: &[(&str, &str)]| request(vec![descriptor(pairs)]);
    for value in ["/api/a", "/api/b"] {
        let d = decide(&limiter, &config, &call(&[("path", value)])).await;
        assert_eq!(d.overall, Code::Ok);
        assert_eq!(d.observations[0].label, None, "counted as path_/api/*");
    }
    let d = decide(&limiter, &config, &call(&[("path", "/api/c")])).await;
    assert_eq!(
        d.overall,
        Code::OverLimit,
        "the third value meets the shared bucket"
    );
    // Without share_threshold each value has its own bucket; value_to_metric names it.
    for value in ["u1", "u1", "u2"] {
        let d = decide(&limiter, &config, &call(&[("user", value)])).await;
        assert_eq!(d.overall, Code::Ok);
        assert_eq!(d.observations[0].label, Some(format!("user_{value}")));
    }
}
