//! Envoy's Rate Limit Quota Service (`envoy.service.rate_limit_quota.v3`, RLQS): Envoy's
//! `rate_limit_quota` filter streams usage reports per bucket; this server answers each report
//! with a quota assignment leased from the very buckets ShouldRateLimit and QuotaLease charge.
//!
//! How an assignment stays exact (never more admitted than the buckets released):
//! * Each report of a bucket leases tokens ([`crate::limiter::Limiter::lease`]) and assigns
//!   them as a `token_bucket` of `max_tokens` = the grant whose refill is one token a year: an
//!   Envoy admits only what was leased for it.
//! * Envoy 1.40 keeps a bucket's token bucket (and its tokens) when an assignment repeats the
//!   previous one, and otherwise starts the new one at `max_tokens` times the old one's
//!   remaining/max ratio, in integer arithmetic: 0 unless the old one was untouched. So every
//!   grant goes out as two actions for the bucket in one response, `DENY_ALL` then the token
//!   bucket: Envoy applies them in order and publishes the result once, so the token bucket
//!   replaces a blanket rule and starts full. Tokens never add up past what was leased; the
//!   previous grant's unspent ones are dropped (under-admission).
//! * An empty bucket is `DENY_ALL`, an unlimited one `ALLOW_ALL`, until the next report.
//! * The service or its store failing sends nothing for the bucket: when the assignment
//!   expires, Envoy's own `no_assignment_behavior` (the operator's failure mode) decides.
//!
//! Envoy 1.40 reports every 5 s whatever `reporting_interval` says, uses whole seconds of
//! every duration and drops an assignment with a TTL under 1 s: assignments live at least
//! [`MIN_TTL`], so they outlast the gap to the next report.

use super::lease::counted_lease;
use super::Shared;
use crate::limiter::{Descriptor, Entry, LeaseDecision, LeaseMode, LeaseRequest};
use crate::metrics::domain_label;
use crate::proto::envoy::r#type::v3::rate_limit_strategy::{BlanketRule, Strategy};
use crate::proto::envoy::r#type::v3::{RateLimitStrategy, TokenBucket};
use crate::proto::rlqs::rate_limit_quota_response::bucket_action::{
    BucketAction as Action, QuotaAssignmentAction,
};
use crate::proto::rlqs::rate_limit_quota_response::BucketAction;
use crate::proto::rlqs::rate_limit_quota_service_server::RateLimitQuotaService;
use crate::proto::rlqs::rate_limit_quota_usage_reports::BucketQuotaUsage;
use crate::proto::rlqs::{BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports};
use futures_util::stream::{self, BoxStream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

/// The shortest assignment: Envoy 1.40's report period (5 s) plus a second for the answer.
pub const MIN_TTL: Duration = Duration::from_secs(6);

/// The time one grant should cover: from one report to the answer to the next.
const HORIZON_SECS: u64 = 6;

/// A grant is at least a tenth of the limit's lease size: a bucket quiet in one report may
/// burst before the next, and Envoy cannot ask sooner.
const FLOOR_DIVISOR: u64 = 10;

/// Buckets of one report leased at once.
const CONCURRENT_LEASES: usize = 16;

/// A token bucket that does not refill within any assignment's life: one token a year.
const NO_REFILL_SECS: i64 = 365 * 24 * 60 * 60;

/// `envoy.service.rate_limit_quota.v3.RateLimitQuotaService`.
pub struct RlqsGrpc {
    shared: Arc<Shared>,
    /// Flips to true at shutdown: open streams end so the server can drain.
    stop: watch::Receiver<bool>,
}

impl RlqsGrpc {
    pub(crate) fn new(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Self {
        RlqsGrpc { shared, stop }
    }
}

/// One Envoy's stream.
struct Session {
    shared: Arc<Shared>,
    reports: Streaming<RateLimitQuotaUsageReports>,
    stop: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl RateLimitQuotaService for RlqsGrpc {
    type StreamRateLimitQuotasStream = BoxStream<'static, Result<RateLimitQuotaResponse, Status>>;

    #[tracing::instrument(level = "debug", skip_all, fields(remote = ?request.remote_addr()))]
    async fn stream_rate_limit_quotas(
        &self,
        request: Request<Streaming<RateLimitQuotaUsageReports>>,
    ) -> Result<Response<Self::StreamRateLimitQuotasStream>, Status> {
        let session = Session {
            shared: Arc::clone(&self.shared),
            reports: request.into_inner(),
            stop: self.stop.clone(),
        };
        let answers = stream::unfold(session, |mut session| async move {
            let answer = session.next_answer().await?;
            Some((answer, session))
        });
        Ok(Response::new(answers.boxed()))
    }
}

impl Session {
    /// The answer to the next report that needs one; None when the stream or the server ends.
    async fn next_answer(&mut self) -> Option<Result<RateLimitQuotaResponse, Status>> {
        loop {
            let report = tokio::select! {
                report = self.reports.message() => report,
                _ = self.stop.wait_for(|stop| *stop) => return None,
            };
            match report {
                Ok(Some(reports)) => {
                    let bucket_action = self.answer(reports).await;
                    if !bucket_action.is_empty() {
                        return Some(Ok(RateLimitQuotaResponse { bucket_action }));
                    }
                }
                Ok(None) => return None,
                Err(status) => {
                    tracing::debug!(%status, "RLQS stream ended by the client");
                    return None;
                }
            }
        }
    }

    /// The actions for the reported buckets the service could lease for.
    async fn answer(&self, reports: RateLimitQuotaUsageReports) -> Vec<BucketAction> {
        self.shared.metrics.rlqs_report(domain_label(
            &self.shared.loaded.load().config,
            &reports.domain,
        ));
        let domain = &reports.domain;
        let shared = &self.shared;
        let leases = stream::iter(reports.bucket_quota_usages)
            .map(|usage| lease_for(shared, domain, usage))
            .buffer_unordered(CONCURRENT_LEASES)
            .collect::<Vec<_>>()
            .await;
        leases
            .into_iter()
            .flatten()
            .flat_map(|(id, decision)| actions(id, &decision))
            .collect()
    }
}

/// Leases for one reported bucket; None (nothing sent) for an empty id or a failed lease.
async fn lease_for(
    shared: &Shared,
    domain: &str,
    usage: BucketQuotaUsage,
) -> Option<(BucketId, LeaseDecision)> {
    let id = usage.bucket_id.clone().filter(|id| !id.bucket.is_empty())?;
    let request = LeaseRequest {
        domain: domain.to_owned(),
        descriptors: descriptors(&id),
        want: want(&usage),
        floor_divisor: FLOOR_DIVISOR,
    };
    match counted_lease(shared, &request).await {
        Ok(decision) => {
            tracing::debug!(
                mode = decision.mode.name(),
                granted = decision.granted,
                "RLQS assignment"
            );
            Some((id, decision))
        }
        Err(status) => {
            tracing::debug!(%status, "RLQS lease failed; Envoy's fallback decides");
            None
        }
    }
}

/// A bucket id as descriptors: each (key, value) pair is a descriptor of one entry, in key
/// order, so every limit a pair matches is charged (as for several `rate_limits` in Envoy).
pub fn descriptors(id: &BucketId) -> Vec<Descriptor> {
    let mut pairs: Vec<(&String, &String)> = id.bucket.iter().collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(key, value)| Descriptor {
            entries: vec![Entry {
                key: key.clone(),
                value: value.clone(),
            }],
            ..Descriptor::default()
        })
        .collect()
}

/// Tokens to ask for: the demand Envoy reported (admitted and refused), scaled from the
/// report's period to [`HORIZON_SECS`], with a quarter more for growth; a bucket's first report
/// (no period yet) asks for a whole lease. The service raises it to a tenth of the limit's
/// lease size ([`FLOOR_DIVISOR`]) and caps it at the lease size.
pub fn want(usage: &BucketQuotaUsage) -> u64 {
    let elapsed = usage
        .time_elapsed
        .as_ref()
        .map_or(0, |d| u64::try_from(d.seconds).unwrap_or(0));
    if elapsed == 0 {
        return u64::MAX;
    }
    let seen = usage
        .num_requests_allowed
        .saturating_add(usage.num_requests_denied);
    let per_horizon = seen.saturating_mul(HORIZON_SECS).div_ceil(elapsed);
    per_horizon.saturating_add(per_horizon / 4).max(1)
}

/// The actions of one bucket for a lease answer, applied by Envoy in order: a grant is
/// `DENY_ALL` then its token bucket, so that the token bucket starts full (see the module doc).
pub fn actions(id: BucketId, decision: &LeaseDecision) -> Vec<BucketAction> {
    let action = |strategy: Strategy| BucketAction {
        bucket_id: Some(id.clone()),
        bucket_action: Some(Action::QuotaAssignmentAction(assignment(
            strategy,
            decision.expires_in_ms,
        ))),
    };
    let blanket = |rule: BlanketRule| Strategy::BlanketRule(rule as i32);
    match decision.mode {
        LeaseMode::Unlimited => vec![action(blanket(BlanketRule::AllowAll))],
        _ if decision.granted == 0 => vec![action(blanket(BlanketRule::DenyAll))],
        _ => vec![
            action(blanket(BlanketRule::DenyAll)),
            action(Strategy::TokenBucket(TokenBucket {
                max_tokens: u32::try_from(decision.granted).unwrap_or(u32::MAX),
                tokens_per_fill: Some(1),
                fill_interval: Some(prost_types::Duration {
                    seconds: NO_REFILL_SECS,
                    nanos: 0,
                }),
            })),
        ],
    }
}

/// An assignment of `strategy` living as long as the lease (`expires_in_ms`), at least
/// [`MIN_TTL`].
fn assignment(strategy: Strategy, expires_in_ms: u64) -> QuotaAssignmentAction {
    let ttl = Duration::from_millis(expires_in_ms).max(MIN_TTL);
    QuotaAssignmentAction {
        assignment_time_to_live: Some(prost_types::Duration {
            seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        rate_limit_strategy: Some(RateLimitStrategy {
            strategy: Some(strategy),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(elapsed: i64, allowed: u64, denied: u64) -> BucketQuotaUsage {
        BucketQuotaUsage {
            bucket_id: None,
            time_elapsed: Some(prost_types::Duration {
                seconds: elapsed,
                nanos: 0,
            }),
            num_requests_allowed: allowed,
            num_requests_denied: denied,
        }
    }

    fn decision(mode: LeaseMode, granted: u64, expires_in_ms: u64) -> LeaseDecision {
        LeaseDecision {
            mode,
            granted,
            expires_in_ms,
            retry_after_ms: 0,
            limits: Vec::new(),
            lease_size: 10,
            store_called: true,
        }
    }

    #[test]
    fn the_first_report_asks_for_a_whole_lease_later_ones_for_the_demand() {
        assert_eq!(want(&usage(0, 1, 0)), u64::MAX);
        // 50 seen in 5 s: 60 over the 6 s horizon, plus a quarter.
        assert_eq!(want(&usage(5, 40, 10)), 75);
        assert_eq!(want(&usage(5, 0, 0)), 1);
        assert_eq!(want(&usage(-1, 5, 0)), u64::MAX);
    }

    #[test]
    fn a_bucket_id_is_one_single_entry_descriptor_per_pair_in_key_order() {
        let id = BucketId {
            bucket: [("tenant", "acme"), ("route", "orders")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let got: Vec<Vec<(String, String)>> = descriptors(&id)
            .into_iter()
            .map(|d| d.entries.into_iter().map(|e| (e.key, e.value)).collect())
            .collect();
        assert_eq!(
            got,
            vec![
                vec![("route".to_string(), "orders".to_string())],
                vec![("tenant".to_string(), "acme".to_string())],
            ]
        );
    }

    fn bucket() -> BucketId {
        BucketId {
            bucket: [("tenant".to_string(), "acme".to_string())].into(),
        }
    }

    /// (strategy, ttl seconds) of each action.
    fn plan(decision: &LeaseDecision) -> Vec<(Strategy, i64)> {
        actions(bucket(), decision)
            .into_iter()
            .map(|a| {
                assert_eq!(a.bucket_id, Some(bucket()));
                let Some(Action::QuotaAssignmentAction(q)) = a.bucket_action else {
                    panic!("{a:?}")
                };
                let strategy = q.rate_limit_strategy.unwrap().strategy.unwrap();
                (strategy, q.assignment_time_to_live.unwrap().seconds)
            })
            .collect()
    }

    const DENY: Strategy = Strategy::BlanketRule(BlanketRule::DenyAll as i32);
    const ALLOW: Strategy = Strategy::BlanketRule(BlanketRule::AllowAll as i32);

    #[test]
    fn a_grant_is_deny_all_then_a_token_bucket_of_the_grant_that_does_not_refill() {
        let got = plan(&decision(LeaseMode::Leased, 40, 5_000));
        let bucket = Strategy::TokenBucket(TokenBucket {
            max_tokens: 40,
            tokens_per_fill: Some(1),
            fill_interval: Some(prost_types::Duration {
                seconds: NO_REFILL_SECS,
                nanos: 0,
            }),
        });
        // A 5 s lease: the assignment still lives until after the next report.
        assert_eq!(got, vec![(DENY, 6), (bucket, 6)]);
        let longer = plan(&decision(LeaseMode::Exact, 1, 30_000));
        assert_eq!(longer.len(), 2);
        assert_eq!(longer[1].1, 30);
    }

    #[test]
    fn empty_buckets_deny_and_unlimited_ones_allow() {
        assert_eq!(
            plan(&decision(LeaseMode::Leased, 0, 5_000)),
            vec![(DENY, 6)]
        );
        assert_eq!(plan(&decision(LeaseMode::Exact, 0, 5_000)), vec![(DENY, 6)]);
        assert_eq!(
            plan(&decision(LeaseMode::Unlimited, 0, 60_000)),
            vec![(ALLOW, 60)]
        );
    }
}
