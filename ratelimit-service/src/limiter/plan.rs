//! Matching and bucket building, shared by ShouldRateLimit and Lease so that both charge the
//! very same buckets: which limits apply to which descriptor, and one bucket per distinct key.

use super::{Descriptor, LimitError, LimitOverride};
use super::{MAX_DESCRIPTORS, MAX_ENTRIES, MAX_ENTRY_BYTES};
use crate::bucket::{Algorithm, BucketSpec};
use crate::config::{Domain, Limit, LimitMode, DEFAULT_LEASE_TTL};
use crate::keys;
use crate::storage::BucketRequest;
use std::borrow::Cow;
use std::collections::HashSet;

/// One limit that applies to one descriptor.
pub(super) struct Applied<'c> {
    pub descriptor: usize,
    pub limit: Cow<'c, Limit>,
    pub kind: AppliedKind,
}

pub(super) enum AppliedKind {
    Unlimited,
    /// `requests_per_unit: 0`: always over, no store call.
    Zero,
    Bucket(usize),
}

/// The limits a request matches and the buckets they charge.
pub(super) struct Plan<'c> {
    /// In the order of the request's descriptors.
    pub applied: Vec<Applied<'c>>,
    /// One per distinct key, charged the hits of every applied limit that maps to it (so a
    /// repeated descriptor charges its bucket twice).
    pub buckets: Vec<BucketRequest>,
}

/// Matches every descriptor (envoyproxy/ratelimit semantics, Envoy's limit overrides,
/// `replaces`) and builds the buckets; a descriptor without its own `hits_addend` charges
/// `hits` to each of its buckets.
pub(super) fn plan<'c>(domain: &'c Domain, descriptors: &[Descriptor], hits: u64) -> Plan<'c> {
    let mut applied: Vec<Applied<'c>> = Vec::with_capacity(descriptors.len());
    for (index, descriptor) in descriptors.iter().enumerate() {
        if let Some(o) = descriptor.limit_override {
            applied.push(Applied {
                descriptor: index,
                limit: Cow::Owned(override_limit(&domain.name, o)),
                kind: AppliedKind::Unlimited,
            });
            continue;
        }
        if let Some(node) = domain.find(entries(descriptor)) {
            applied.extend(node.limits.iter().map(|limit| Applied {
                descriptor: index,
                limit: Cow::Borrowed(limit),
                kind: AppliedKind::Unlimited,
            }));
        }
    }
    apply_replaces(&mut applied);
    let buckets = build_buckets(&mut applied, descriptors, hits);
    Plan { applied, buckets }
}

fn entries(descriptor: &Descriptor) -> impl ExactSizeIterator<Item = (&str, &str)> {
    descriptor
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
}

/// One bucket per distinct key; sets each applied limit's kind.
fn build_buckets(
    applied: &mut [Applied<'_>],
    descriptors: &[Descriptor],
    default_hits: u64,
) -> Vec<BucketRequest> {
    let mut buckets: Vec<BucketRequest> = Vec::with_capacity(applied.len());
    for a in applied {
        let limit = &a.limit;
        if limit.unlimited {
            continue;
        }
        if limit.requests_per_unit == 0 {
            a.kind = AppliedKind::Zero;
            continue;
        }
        let descriptor = &descriptors[a.descriptor];
        let hits = descriptor.hits_addend.unwrap_or(default_hits);
        // Under `share_threshold`, a wildcard's pattern stands for the value: one shared bucket.
        let entries = entries(descriptor)
            .enumerate()
            .map(|(i, (k, v))| (k, limit.bucket_value(i, v)));
        let key = keys::bucket_key(&limit.key_prefix, entries);
        let enforce = !limit.shadow_mode;
        if let Some(i) = buckets.iter().position(|b| b.key == key) {
            buckets[i].hits = buckets[i].hits.saturating_add(hits);
            buckets[i].enforce |= enforce;
            a.kind = AppliedKind::Bucket(i);
        } else {
            a.kind = AppliedKind::Bucket(buckets.len());
            buckets.push(BucketRequest {
                key,
                spec: BucketSpec {
                    algorithm: limit.algorithm,
                    limit: u64::from(limit.requests_per_unit),
                    period_us: limit.period_secs().saturating_mul(1_000_000),
                    burst: limit.burst,
                },
                hits,
                enforce,
            });
        }
    }
    buckets
}

/// A limit for an override sent by Envoy: a token bucket of `requests_per_unit` per unit
/// (envoyproxy/ratelimit applies overrides only in configured domains; so do we).
fn override_limit(domain: &str, o: LimitOverride) -> Limit {
    Limit {
        id: usize::MAX,
        name: None,
        unit: o.unit,
        unit_multiplier: 1,
        requests_per_unit: o.requests_per_unit,
        algorithm: Algorithm::TokenBucket,
        burst: u64::from(o.requests_per_unit),
        unlimited: false,
        shadow_mode: false,
        detailed_metric: false,
        key_prefix: keys::override_prefix(domain, o.unit.seconds(), o.requests_per_unit),
        stats_path: String::new(),
        path: Vec::new(),
        metadata: None,
        replaces: Vec::new(),
        mode: LimitMode::Exact,
        lease_ttl: DEFAULT_LEASE_TTL,
    }
}

/// envoyproxy/ratelimit's `replaces`: a matched limit naming another matched limit drops it.
fn apply_replaces(applied: &mut Vec<Applied<'_>>) {
    if applied.iter().all(|a| a.limit.replaces.is_empty()) {
        return;
    }
    let replaced: HashSet<String> = applied
        .iter()
        .flat_map(|a| a.limit.replaces.iter().cloned())
        .collect();
    applied.retain(|a| a.limit.name.as_ref().is_none_or(|n| !replaced.contains(n)));
}

/// Bounds on one request, so memory per call stays bounded.
pub(super) fn validate(domain: &str, descriptors: &[Descriptor]) -> Result<(), LimitError> {
    let invalid = |m: String| Err(LimitError::InvalidRequest(m));
    if domain.is_empty() {
        return invalid("rate limit domain must not be empty".into());
    }
    if descriptors.is_empty() {
        return invalid("rate limit descriptor list must not be empty".into());
    }
    if descriptors.len() > MAX_DESCRIPTORS {
        return invalid(format!(
            "{} descriptors exceed the maximum of {MAX_DESCRIPTORS}",
            descriptors.len()
        ));
    }
    let entries: usize = descriptors.iter().map(|d| d.entries.len()).sum();
    if entries > MAX_ENTRIES {
        return invalid(format!(
            "{entries} descriptor entries exceed the maximum of {MAX_ENTRIES}"
        ));
    }
    let bytes: usize = descriptors
        .iter()
        .flat_map(|d| &d.entries)
        .map(|e| e.key.len() + e.value.len())
        .sum::<usize>()
        + domain.len();
    if bytes > MAX_ENTRY_BYTES {
        return invalid(format!(
            "descriptor keys and values total {bytes} bytes, over the maximum of {MAX_ENTRY_BYTES}"
        ));
    }
    Ok(())
}
