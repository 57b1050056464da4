//! The gRPC edge: protobuf <-> limiter types, errors -> `tonic::Status`.

use super::Shared;
use crate::config::Unit;
use crate::limiter::{
    Code, Decision, Descriptor, Entry, LimitError, LimitOverride, Request as LimitRequest,
};
use crate::metrics::{domain_label, Metrics};
use crate::proto::envoy::config::core::v3::HeaderValue;
use crate::proto::envoy::r#type::v3::RateLimitUnit;
use crate::proto::rls::rate_limit_response::{
    rate_limit::Unit as ProtoUnit, Code as ProtoCode, DescriptorStatus, RateLimit,
};
use crate::proto::rls::rate_limit_service_server::RateLimitService;
use crate::proto::rls::{RateLimitRequest, RateLimitResponse};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// `envoy.service.ratelimit.v3.RateLimitService`.
pub struct RateLimitGrpc {
    shared: Arc<Shared>,
}

impl RateLimitGrpc {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        RateLimitGrpc { shared }
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimitGrpc {
    #[tracing::instrument(level = "debug", skip_all, fields(remote = ?request.remote_addr()))]
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let request = from_proto(request.into_inner());
        let loaded = self.shared.loaded.load_full();
        let metrics = &self.shared.metrics;
        metrics.should_rate_limit_call(domain_label(&loaded.config, &request.domain));
        let started = Instant::now();
        let result = self
            .shared
            .limiter
            .should_rate_limit(&loaded.config, &request, started)
            .await;
        match result {
            Ok(decision) => {
                if decision.store_called {
                    metrics.observe_redis_latency(started.elapsed().as_secs_f64());
                }
                metrics.record(&loaded.counters, &request.domain, &decision.observations);
                Ok(Response::new(to_proto(decision)))
            }
            Err(err) => Err(limit_error_status(metrics, &request.domain, err)),
        }
    }
}

/// A limiter error as a gRPC status: bad requests are INVALID_ARGUMENT, transient store failures
/// UNAVAILABLE (Envoy's `failure_mode_deny` or the gateway's failure mode decides), others
/// INTERNAL. Store failures are counted and logged.
pub(super) fn limit_error_status(metrics: &Metrics, domain: &str, err: LimitError) -> Status {
    match err {
        LimitError::InvalidRequest(message) => Status::invalid_argument(message),
        LimitError::Store(err) => {
            metrics.redis_error(err.transient);
            tracing::warn!(domain = %domain, error = %err, "rate limit store failed");
            if err.transient {
                Status::unavailable(err.to_string())
            } else {
                Status::internal(err.to_string())
            }
        }
    }
}

fn unit_from_proto(unit: i32) -> Option<Unit> {
    match RateLimitUnit::try_from(unit).ok()? {
        RateLimitUnit::Second => Some(Unit::Second),
        RateLimitUnit::Minute => Some(Unit::Minute),
        RateLimitUnit::Hour => Some(Unit::Hour),
        RateLimitUnit::Day => Some(Unit::Day),
        RateLimitUnit::Month => Some(Unit::Month),
        RateLimitUnit::Year => Some(Unit::Year),
        RateLimitUnit::Unknown => None,
    }
}

fn unit_to_proto(unit: Unit) -> ProtoUnit {
    match unit {
        Unit::Second => ProtoUnit::Second,
        Unit::Minute => ProtoUnit::Minute,
        Unit::Hour => ProtoUnit::Hour,
        Unit::Day => ProtoUnit::Day,
        // Envoy's RateLimitResponse has no week: the limit is reported without a unit (Envoy's
        // x-ratelimit headers then carry no window) rather than as a wrong one.
        Unit::Week => ProtoUnit::Unknown,
        Unit::Month => ProtoUnit::Month,
        Unit::Year => ProtoUnit::Year,
    }
}

/// Moves the strings out of the protobuf request (no copies).
pub(crate) fn from_proto(request: RateLimitRequest) -> LimitRequest {
    LimitRequest {
        domain: request.domain,
        hits_addend: u64::from(request.hits_addend.max(1)),
        descriptors: request
            .descriptors
            .into_iter()
            .map(|d| Descriptor {
                entries: d
                    .entries
                    .into_iter()
                    .map(|e| Entry {
                        key: e.key,
                        value: e.value,
                    })
                    .collect(),
                // An override with an unknown unit cannot be honoured: the config applies.
                limit_override: d.limit.and_then(|l| {
                    unit_from_proto(l.unit).map(|unit| LimitOverride {
                        requests_per_unit: l.requests_per_unit,
                        unit,
                    })
                }),
                hits_addend: d.hits_addend,
            })
            .collect(),
    }
}

fn code_to_proto(code: Code) -> i32 {
    match code {
        Code::Ok => ProtoCode::Ok as i32,
        Code::OverLimit => ProtoCode::OverLimit as i32,
    }
}

pub(crate) fn to_proto(decision: Decision) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: code_to_proto(decision.overall),
        statuses: decision
            .statuses
            .into_iter()
            .map(|s| DescriptorStatus {
                code: code_to_proto(s.code),
                current_limit: s.current_limit.map(|l| RateLimit {
                    name: l.name.unwrap_or_default(),
                    requests_per_unit: l.requests_per_unit,
                    unit: unit_to_proto(l.unit) as i32,
                }),
                limit_remaining: s.limit_remaining,
                duration_until_reset: s.duration_until_reset.map(|d| prost_types::Duration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
                }),
            })
            .collect(),
        response_headers_to_add: decision
            .response_headers
            .into_iter()
            .map(|(key, value)| HeaderValue {
                key: key.to_owned(),
                value,
                raw_value: Vec::new(),
            })
            .collect(),
        request_headers_to_add: Vec::new(),
        raw_body: Vec::new(),
    }
}
