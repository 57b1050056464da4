//! The gRPC edge of leased quotas (`edgegate.ratelimit.v1.QuotaLease`, contract in
//! proto/edgegate/ratelimit/v1/lease.proto): protobuf <-> limiter types, errors ->
//! `tonic::Status` as for ShouldRateLimit. No credentials, like ShouldRateLimit: the gRPC port
//! belongs on the network between the gateways and the service.

use super::grpc::limit_error_status;
use super::Shared;
use crate::limiter::{
    Descriptor as LimitDescriptor, Entry, LeaseDecision, LeaseMode, LeaseRequest as Lease,
    ReturnRequest as Give,
};
use crate::metrics::domain_label;
use crate::proto::lease::quota_lease_server::QuotaLease;
use crate::proto::lease::{
    Descriptor, LeaseMode as ProtoMode, LeaseRequest, LeaseResponse, LimitState, ReturnRequest,
    ReturnResponse,
};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// `edgegate.ratelimit.v1.QuotaLease`.
pub struct QuotaLeaseGrpc {
    shared: Arc<Shared>,
}

impl QuotaLeaseGrpc {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        QuotaLeaseGrpc { shared }
    }
}

#[tonic::async_trait]
impl QuotaLease for QuotaLeaseGrpc {
    #[tracing::instrument(level = "debug", skip_all, fields(remote = ?request.remote_addr()))]
    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let request = request.into_inner();
        let request = Lease {
            domain: request.domain,
            descriptors: descriptors(request.descriptors),
            want: u64::from(request.want),
            floor_divisor: 0,
        };
        let decision = counted_lease(&self.shared, &request).await?;
        Ok(Response::new(to_proto(decision)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(remote = ?request.remote_addr()))]
    async fn r#return(
        &self,
        request: Request<ReturnRequest>,
    ) -> Result<Response<ReturnResponse>, Status> {
        let request = request.into_inner();
        let request = Give {
            domain: request.domain,
            descriptors: descriptors(request.descriptors),
            tokens: u64::from(request.tokens),
        };
        let loaded = self.shared.loaded.load_full();
        let metrics = &self.shared.metrics;
        let started = Instant::now();
        match self
            .shared
            .limiter
            .give_back(&loaded.config, &request)
            .await
        {
            Ok(decision) => {
                if decision.store_called {
                    metrics.observe_redis_latency(started.elapsed().as_secs_f64());
                }
                let domain = domain_label(&loaded.config, &request.domain);
                metrics.return_call(domain, decision.returned);
                Ok(Response::new(ReturnResponse {
                    returned: saturate(decision.returned),
                }))
            }
            Err(err) => Err(limit_error_status(metrics, &request.domain, err)),
        }
    }
}

/// One lease against the config in force, counted in the metrics (Lease calls by mode, tokens
/// granted, Redis latency); errors become the `Status` ShouldRateLimit would answer. QuotaLease
/// and RLQS both lease through here.
pub(crate) async fn counted_lease(
    shared: &Shared,
    request: &Lease,
) -> Result<LeaseDecision, Status> {
    let loaded = shared.loaded.load_full();
    let metrics = &shared.metrics;
    let started = Instant::now();
    match shared.limiter.lease(&loaded.config, request, started).await {
        Ok(decision) => {
            if decision.store_called {
                metrics.observe_redis_latency(started.elapsed().as_secs_f64());
            }
            let domain = domain_label(&loaded.config, &request.domain);
            metrics.lease_call(domain, decision.mode, decision.granted);
            Ok(decision)
        }
        Err(err) => Err(limit_error_status(metrics, &request.domain, err)),
    }
}

/// Moves the strings out of the protobuf descriptors (no copies).
fn descriptors(descriptors: Vec<Descriptor>) -> Vec<LimitDescriptor> {
    descriptors
        .into_iter()
        .map(|d| LimitDescriptor {
            entries: d
                .entries
                .into_iter()
                .map(|e| Entry {
                    key: e.key,
                    value: e.value,
                })
                .collect(),
            ..LimitDescriptor::default()
        })
        .collect()
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn to_proto(decision: LeaseDecision) -> LeaseResponse {
    let mode = match decision.mode {
        LeaseMode::Unlimited => ProtoMode::Unlimited,
        LeaseMode::Leased => ProtoMode::Leased,
        LeaseMode::Exact => ProtoMode::Exact,
    };
    LeaseResponse {
        mode: mode as i32,
        granted: saturate(decision.granted),
        expires_in_ms: decision.expires_in_ms,
        retry_after_ms: decision.retry_after_ms,
        limits: decision
            .limits
            .into_iter()
            .map(|l| LimitState {
                name: l.name,
                requests_per_unit: l.requests_per_unit,
                unit_seconds: saturate(l.unit_seconds),
                remaining: l.remaining,
                reset_ms: l.reset_ms,
                next_token_ms: l.next_token_ms,
            })
            .collect(),
        lease_size: decision.lease_size,
    }
}
