//! The metrics aggregate defines (Envoy shows them as `wasmcustom.<name>`), per endpoint and
//! per leg, counted in the VM and handed to the host once per tick:
//!
//! - `aggregate.<endpoint>.requests`, `.complete`, `.partial` (200 with `_errors`), `.failed`
//!   (a required leg failed: 502/504), `.abandoned` (the client left first); with a cache,
//!   `.cache_hits` (answered from it, no leg called) and `.cache_misses`;
//! - `aggregate.<endpoint>.<leg>.ok`, `.failed`; `aggregate.leg_failures.<reason>`;
//! - latency, for the endpoint (dispatch to answer) and each leg (dispatch to its answer):
//!   `<prefix>.latency_ms_sum` and cumulative buckets `<prefix>.latency_le_<ms>` (`le_inf`
//!   counts every observation), as Prometheus histograms read: the Host seam has counters and
//!   gauges, not Envoy's histograms.

use crate::config::Endpoint;
use crate::outcome::{Failure, REASONS};
use filter_core::host::{BatchedCounter, Host};

/// Bucket bounds of the latency counters, in milliseconds.
pub const BOUNDS_MS: [u64; 9] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500];

/// A latency distribution: the sum and cumulative bucket counters.
#[derive(Debug)]
pub struct Latency<H: Host> {
    sum: BatchedCounter<H>,
    /// One per bound, then `inf`.
    buckets: Vec<BatchedCounter<H>>,
}

impl<H: Host> Latency<H> {
    fn define(host: &H, prefix: &str) -> Self {
        let mut buckets: Vec<BatchedCounter<H>> = (BOUNDS_MS.iter())
            .map(|b| BatchedCounter::define(host, &format!("{prefix}.latency_le_{b}")))
            .collect();
        buckets.push(BatchedCounter::define(
            host,
            &format!("{prefix}.latency_le_inf"),
        ));
        Latency {
            sum: BatchedCounter::define(host, &format!("{prefix}.latency_ms_sum")),
            buckets,
        }
    }

    pub fn record(&self, ms: u64) {
        self.sum.add(i64::try_from(ms).unwrap_or(i64::MAX));
        let first = BOUNDS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BOUNDS_MS.len());
        for bucket in &self.buckets[first..] {
            bucket.inc();
        }
    }

    fn flush(&self) {
        self.sum.flush();
        self.buckets.iter().for_each(BatchedCounter::flush);
    }
}

#[derive(Debug)]
pub struct LegMetrics<H: Host> {
    pub ok: BatchedCounter<H>,
    pub failed: BatchedCounter<H>,
    pub latency: Latency<H>,
}

#[derive(Debug)]
pub struct EndpointMetrics<H: Host> {
    pub requests: BatchedCounter<H>,
    pub complete: BatchedCounter<H>,
    pub partial: BatchedCounter<H>,
    pub failed: BatchedCounter<H>,
    pub abandoned: BatchedCounter<H>,
    pub cache_hits: BatchedCounter<H>,
    pub cache_misses: BatchedCounter<H>,
    pub latency: Latency<H>,
    pub legs: Vec<LegMetrics<H>>,
}

/// Every metric of the plugin, defined once per configuration.
#[derive(Debug)]
pub struct Metrics<H: Host> {
    pub endpoints: Vec<EndpointMetrics<H>>,
    reasons: Vec<BatchedCounter<H>>,
}

impl<H: Host> Metrics<H> {
    pub fn define<'a>(host: &H, endpoints: impl Iterator<Item = &'a Endpoint>) -> Self {
        let endpoints = endpoints
            .map(|e| EndpointMetrics::define(host, e))
            .collect();
        let reasons = (REASONS.iter())
            .map(|r| BatchedCounter::define(host, &format!("aggregate.leg_failures.{r}")))
            .collect();
        Metrics { endpoints, reasons }
    }

    /// A leg of `endpoint` ended, after `ms`.
    pub fn leg(&self, endpoint: usize, leg: usize, result: Result<(), Failure>, ms: u64) {
        let Some(m) = self.endpoints.get(endpoint).and_then(|e| e.legs.get(leg)) else {
            return;
        };
        m.latency.record(ms);
        match result {
            Ok(()) => m.ok.inc(),
            Err(failure) => {
                m.failed.inc();
                let reason = REASONS.iter().position(|r| *r == failure.reason());
                if let Some(c) = reason.and_then(|i| self.reasons.get(i)) {
                    c.inc();
                }
            }
        }
    }

    pub fn endpoint(&self, endpoint: usize) -> Option<&EndpointMetrics<H>> {
        self.endpoints.get(endpoint)
    }

    pub fn flush(&self) {
        for e in &self.endpoints {
            for c in [
                &e.requests,
                &e.complete,
                &e.partial,
                &e.failed,
                &e.abandoned,
                &e.cache_hits,
                &e.cache_misses,
            ] {
                c.flush();
            }
            e.latency.flush();
            for l in &e.legs {
                l.ok.flush();
                l.failed.flush();
                l.latency.flush();
            }
        }
        self.reasons.iter().for_each(BatchedCounter::flush);
    }
}

impl<H: Host> EndpointMetrics<H> {
    fn define(host: &H, endpoint: &Endpoint) -> Self {
        let p = format!("aggregate.{}", endpoint.name);
        let counter = |name: &str| BatchedCounter::define(host, &format!("{p}.{name}"));
        let legs = (endpoint.legs.iter())
            .map(|leg| {
                let lp = format!("{p}.{}", leg.name);
                LegMetrics {
                    ok: BatchedCounter::define(host, &format!("{lp}.ok")),
                    failed: BatchedCounter::define(host, &format!("{lp}.failed")),
                    latency: Latency::define(host, &lp),
                }
            })
            .collect();
        EndpointMetrics {
            requests: counter("requests"),
            complete: counter("complete"),
            partial: counter("partial"),
            failed: counter("failed"),
            abandoned: counter("abandoned"),
            cache_hits: counter("cache_hits"),
            cache_misses: counter("cache_misses"),
            latency: Latency::define(host, &p),
            legs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_core::testing::FakeHost;

    #[test]
    fn latency_buckets_are_cumulative() {
        let host = FakeHost::at(0);
        let l = Latency::define(&host, "x");
        l.record(7);
        l.record(300);
        l.record(60_000);
        l.flush();
        assert_eq!(host.metric("x.latency_ms_sum"), 60_307);
        assert_eq!(host.metric("x.latency_le_5"), 0);
        assert_eq!(host.metric("x.latency_le_10"), 1);
        assert_eq!(host.metric("x.latency_le_500"), 2);
        assert_eq!(host.metric("x.latency_le_2500"), 2);
        assert_eq!(host.metric("x.latency_le_inf"), 3);
    }
}
