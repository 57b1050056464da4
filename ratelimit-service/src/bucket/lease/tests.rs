use super::*;
use crate::bucket::Algorithm;

const SEC: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn spec(algorithm: Algorithm, limit: u64, period_s: u64, burst: u64) -> BucketSpec {
    BucketSpec {
        algorithm,
        limit,
        period_us: period_s * SEC,
        burst,
    }
}

fn input(spec: BucketSpec, state: Option<BucketState>) -> LeaseInput {
    LeaseInput {
        spec,
        state,
        weight: 1,
        enforce: true,
    }
}

/// The state after taking `n` tokens from a fresh bucket at `T0`.
fn after_taking(spec: &BucketSpec, n: u64) -> Option<BucketState> {
    evaluate(spec, None, T0, n, true).new_state
}

#[test]
fn grant_is_the_smallest_whole_count_of_enforced_buckets_capped_at_want() {
    let big = spec(Algorithm::TokenBucket, 100, 60, 100);
    let small = spec(Algorithm::FixedWindow, 10, 60, 10);
    let inputs = [
        input(big, after_taking(&big, 40)),
        input(small, after_taking(&small, 7)),
    ];
    assert_eq!(grant(&inputs, T0, 50), 3, "the window bucket holds 3");
    assert_eq!(grant(&inputs, T0, 2), 2, "capped at want");
    let (granted, effects) = lease(&inputs, T0, 50);
    assert_eq!(granted, 3);
    assert_eq!(effects[0].eval.remaining, 57);
    assert_eq!(effects[1].eval.remaining, 0);
    assert!(
        effects.iter().all(|e| e.eval.new_state.is_some()),
        "both charged"
    );
    assert_eq!(effects[0].next_token_ms, 0);
    assert!(effects[1].next_token_ms > 0, "the window is spent");
}

#[test]
fn an_empty_bucket_grants_nothing_and_charges_nobody() {
    let tb = spec(Algorithm::TokenBucket, 10, 1, 10);
    let other = spec(Algorithm::TokenBucket, 100, 60, 100);
    let inputs = [input(other, None), input(tb, after_taking(&tb, 10))];
    let (granted, effects) = lease(&inputs, T0, 5);
    assert_eq!(granted, 0);
    assert!(effects.iter().all(|e| e.eval.new_state.is_none()));
    assert_eq!(effects[0].eval.remaining, 100);
    assert_eq!(
        effects[1].next_token_ms, 100,
        "10 per second: a token every 100 ms"
    );
    assert_eq!(effects[1].eval.empty_ms, 100);
}

#[test]
fn shadow_buckets_never_lower_the_grant_and_pay_only_when_they_can() {
    let tb = spec(Algorithm::TokenBucket, 100, 60, 100);
    let shadow = spec(Algorithm::TokenBucket, 2, 3600, 2);
    let mut inputs = [input(tb, None), input(shadow, None)];
    inputs[1].enforce = false;
    let (granted, effects) = lease(&inputs, T0, 10);
    assert_eq!(granted, 10);
    assert!(effects[0].eval.new_state.is_some());
    assert!(
        effects[1].eval.new_state.is_none(),
        "2 tokens cannot pay 10"
    );
    let (granted, effects) = lease(&inputs, T0, 2);
    assert_eq!(granted, 2);
    assert_eq!(effects[1].eval.remaining, 0, "paid when it could");
}

#[test]
fn weight_charges_repeated_descriptors_per_request() {
    let tb = spec(Algorithm::TokenBucket, 10, 3600, 10);
    let inputs = [LeaseInput {
        weight: 3,
        ..input(tb, None)
    }];
    let (granted, effects) = lease(&inputs, T0, 100);
    assert_eq!(granted, 3, "10 tokens pay for 3 requests of 3");
    assert_eq!(effects[0].eval.remaining, 1);
    assert!(
        effects[0].next_token_ms > 0,
        "1 token cannot pay a request of 3"
    );
}

#[test]
fn window_buckets_grant_what_the_window_has_left() {
    let sliding = spec(Algorithm::SlidingWindow, 10, 10, 10);
    let start = 1000 * SEC;
    let state = evaluate(&sliding, None, start, 10, true).new_state;
    // Halfway into the next window the previous 10 weigh 5.
    let (granted, effects) = lease(&[input(sliding, state)], start + 15 * SEC, 8);
    assert_eq!(granted, 5);
    assert_eq!(effects[0].eval.remaining, 0);
    assert_eq!(effects[0].next_token_ms, 1000);
}

#[test]
fn give_back_refills_a_token_bucket_up_to_its_burst() {
    let tb = spec(Algorithm::TokenBucket, 10, 3600, 10);
    let state = after_taking(&tb, 6);
    let back = give_back(&tb, state, T0, 4, 1);
    assert_eq!(back.restored, 4);
    assert_eq!(whole_tokens(&tb, back.new_state, T0), 8);
    let capped = give_back(&tb, back.new_state, T0, 5, 1);
    assert_eq!(capped.restored, 2, "capped at the burst");
    assert_eq!(whole_tokens(&tb, capped.new_state, T0), 10);
    assert_eq!(give_back(&tb, capped.new_state, T0, 1, 1), NOTHING);
    assert_eq!(give_back(&tb, None, T0, 3, 1), NOTHING, "no state: full");
    let weighted = give_back(&tb, state, T0, 2, 2);
    assert_eq!(weighted.restored, 2);
    assert_eq!(whole_tokens(&tb, weighted.new_state, T0), 8);
}

#[test]
fn give_back_lowers_a_window_count_only_in_its_own_window() {
    let fixed = spec(Algorithm::FixedWindow, 10, 60, 10);
    let state = after_taking(&fixed, 6);
    let back = give_back(&fixed, state, T0, 10, 1);
    assert_eq!(back.restored, 6, "not below zero");
    assert_eq!(whole_tokens(&fixed, back.new_state, T0), 10);
    assert_eq!(back.ttl_ms, None, "the window's expiry stays");
    let next_window = T0 + 60 * SEC;
    assert_eq!(give_back(&fixed, state, next_window, 3, 1), NOTHING);
    let sliding = spec(Algorithm::SlidingWindow, 10, 60, 10);
    let state = after_taking(&sliding, 4);
    let back = give_back(&sliding, state, T0, 3, 1);
    assert_eq!(back.restored, 3);
    assert_eq!(whole_tokens(&sliding, back.new_state, T0), 9);
}
