//! RLQS (`envoy.service.rate_limit_quota.v3`) over a real gRPC stream, as Envoy's
//! `rate_limit_quota` filter speaks it: usage reports in, assignments out. Envoy itself is in
//! tests/tests/rlqs.rs; here the client is tonic, so the grants can be read exactly.

use crate::prelude::*;
use futures_util::StreamExt;
use ratelimit_service::proto::envoy::r#type::v3::rate_limit_strategy::{BlanketRule, Strategy};
use ratelimit_service::proto::rlqs::rate_limit_quota_response::bucket_action::BucketAction as Action;
use ratelimit_service::proto::rlqs::rate_limit_quota_service_client::RateLimitQuotaServiceClient;
use ratelimit_service::proto::rlqs::rate_limit_quota_usage_reports::BucketQuotaUsage;
use ratelimit_service::proto::rlqs::{
    BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports,
};
use tokio::sync::mpsc;

const LEASED: &str = r#"
domain: edge
descriptors:
  - key: tenant
    value: acme
    rate_limit: { unit: hour, requests_per_unit: 25, mode: leased, lease_size: 10 }
  - key: tenant
    value: big
    rate_limit: { unit: hour, requests_per_unit: 10000, mode: leased, lease_size: 100 }
"#;

/// One Envoy's stream: reports go in through `reports`, answers come out of `answers`.
struct Stream {
    reports: mpsc::Sender<RateLimitQuotaUsageReports>,
    answers: tonic::Streaming<RateLimitQuotaResponse>,
}

impl Stream {
    async fn open(service: &Service) -> Stream {
        let url = format!("http://{}", service.grpc);
        let mut client = eventually("gRPC accepts connections", Duration::from_secs(10), || {
            let url = url.clone();
            async move { RateLimitQuotaServiceClient::connect(url).await.ok() }
        })
        .await;
        let (reports, rx) = mpsc::channel(4);
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let answers = client
            .stream_rate_limit_quotas(outbound)
            .await
            .unwrap()
            .into_inner();
        Stream { reports, answers }
    }

    /// Reports `allowed` requests of `tenant` over `elapsed` seconds; returns the answer as
    /// (strategy kind, tokens) per action.
    async fn report(&mut self, tenant: &str, elapsed: i64, allowed: u64) -> Vec<(String, u32)> {
        let usage = BucketQuotaUsage {
            bucket_id: Some(bucket(tenant)),
            time_elapsed: Some(prost_types::Duration {
                seconds: elapsed,
                nanos: 0,
            }),
            num_requests_allowed: allowed,
            num_requests_denied: 0,
        };
        let report = RateLimitQuotaUsageReports {
            domain: "edge".into(),
            bucket_quota_usages: vec![usage],
        };
        self.reports.send(report).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), self.answers.message())
            .await
            .expect("an answer within 5 s")
            .unwrap()
            .expect("the stream stays open");
        answer
            .bucket_action
            .into_iter()
            .map(|a| {
                assert_eq!(a.bucket_id, Some(bucket(tenant)));
                let Some(Action::QuotaAssignmentAction(q)) = a.bucket_action else {
                    panic!("not an assignment: {a:?}")
                };
                assert!(q.assignment_time_to_live.unwrap().seconds >= 6);
                match q.rate_limit_strategy.unwrap().strategy.unwrap() {
                    Strategy::BlanketRule(r) if r == BlanketRule::DenyAll as i32 => {
                        ("deny".to_string(), 0)
                    }
                    Strategy::BlanketRule(_) => ("allow".to_string(), 0),
                    Strategy::TokenBucket(b) => ("tokens".to_string(), b.max_tokens),
                    other => panic!("unexpected strategy {other:?}"),
                }
            })
            .collect()
    }
}

fn bucket(tenant: &str) -> BucketId {
    BucketId {
        bucket: [("tenant".to_string(), tenant.to_string())].into(),
    }
}

fn tokens(answer: &[(String, u32)]) -> u32 {
    answer.iter().map(|(_, n)| n).sum()
}

async fn leased_service(dir: &Path) -> Service {
    let path = write_config(dir, LEASED);
    Service::start(Settings::new(path, StoreSettings::Memory)).await
}

#[tokio::test]
async fn two_streams_get_grants_that_never_sum_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let service = leased_service(dir.path()).await;
    let (mut a, mut b) = (Stream::open(&service).await, Stream::open(&service).await);
    // First reports: a whole lease each, as DENY_ALL then the token bucket.
    let first_a = a.report("acme", 0, 1).await;
    assert_eq!(
        first_a,
        [("deny".to_string(), 0), ("tokens".to_string(), 10)]
    );
    assert_eq!(tokens(&b.report("acme", 0, 1).await), 10);
    // Busy: each asks for more than is left; 5 remain of 25.
    let mut total = 20;
    for _ in 0..3 {
        total += tokens(&a.report("acme", 5, 10).await);
        total += tokens(&b.report("acme", 5, 10).await);
    }
    assert_eq!(total, 25, "grants sum to the limit, never past it");
    // Empty: DENY_ALL alone.
    assert_eq!(a.report("acme", 5, 0).await, [("deny".to_string(), 0)]);
    // A tenant no limit matches: ALLOW_ALL.
    assert_eq!(a.report("other", 0, 1).await, [("allow".to_string(), 0)]);
    drop((a, b));
    service.shutdown().await;
}

#[tokio::test]
async fn grants_follow_the_demand_between_a_tenth_of_a_lease_and_a_whole_one() {
    let dir = tempfile::tempdir().unwrap();
    let service = leased_service(dir.path()).await;
    let mut stream = Stream::open(&service).await;
    stream.report("acme", 0, 1).await;
    // 2 requests in 5 s: 3 over the next 6 s (rounded up), a quarter more rounds to 3.
    assert_eq!(tokens(&stream.report("acme", 5, 2).await), 3);
    // Quiet, but never less than a tenth of the lease (100): a burst may come before the next
    // report. Busy: the demand, up to a whole lease.
    assert_eq!(tokens(&stream.report("big", 0, 1).await), 100);
    assert_eq!(tokens(&stream.report("big", 5, 0).await), 10);
    assert_eq!(tokens(&stream.report("big", 5, 40).await), 60);
    assert_eq!(tokens(&stream.report("big", 5, 400).await), 100);
    service.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_instead_of_waiting_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let service = leased_service(dir.path()).await;
    let mut stream = Stream::open(&service).await;
    stream.report("acme", 0, 1).await;
    // The client keeps its side open, as Envoy does; the service still stops within 5 s.
    service.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), stream.answers.next()).await;
    assert!(
        matches!(end, Ok(None) | Ok(Some(Err(_)))),
        "the stream ended: {end:?}"
    );
}
