//! `rls-load`: drives ShouldRateLimit at fixed concurrency for a fixed duration and prints one
//! JSON line: decisions/s and latency percentiles. Targets loopback addresses only and stops by
//! itself. Descriptors are `k1=v<n>` (plus `k2`, `k3` with `--descriptors 3`), `n` spread over
//! `--keys` values; `bench/config.yaml` configures matching limits.
//!
//! Closed loop: `--concurrency` requests are always in flight. For latency at half saturation,
//! first find the saturated rate, then lower the concurrency until the rate halves (on a 2-core
//! machine that is about 2).

use anyhow::{bail, Context, Result};
use clap::Parser;
use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use ratelimit_service::proto::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use ratelimit_service::proto::rls::rate_limit_response::Code;
use ratelimit_service::proto::rls::rate_limit_service_client::RateLimitServiceClient;
use ratelimit_service::proto::rls::RateLimitRequest;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// gRPC address of the service; must be a loopback address.
    #[arg(long)]
    addr: SocketAddr,
    /// Requests in flight at any time.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Distinct descriptor values.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Descriptors per request: 1 or 3.
    #[arg(long, default_value_t = 1)]
    descriptors: usize,
    #[arg(long, default_value = "bench")]
    domain: String,
    /// HTTP/2 connections shared by the workers.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Runtime threads of the generator itself; 1 leaves the CPUs to the service under test.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    over_limit: u64,
    errors: u64,
}

fn request(domain: &str, descriptors: usize, n: u64) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: (1..=descriptors)
            .map(|d| RateLimitDescriptor {
                entries: vec![Entry {
                    key: format!("k{d}"),
                    value: format!("v{n}"),
                }],
                ..RateLimitDescriptor::default()
            })
            .collect(),
        hits_addend: 1,
    }
}

async fn worker(
    mut client: RateLimitServiceClient<Channel>,
    args: &Args,
    seed: u64,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut state = seed | 1;
    while Instant::now() < until {
        // xorshift: cheap, reproducible spread over the keys.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let req = request(&args.domain, args.descriptors, state % args.keys.max(1));
        let started = Instant::now();
        let reply = client.should_rate_limit(req).await;
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        match reply {
            Ok(r) if r.get_ref().overall_code == Code::OverLimit as i32 => tally.over_limit += 1,
            Ok(_) => tally.ok += 1,
            Err(_) => {
                tally.errors += 1;
                continue;
            }
        }
        tally.latencies_us.push(micros);
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(drive(args))
}

async fn drive(args: Args) -> Result<()> {
    if !args.addr.ip().is_loopback() {
        bail!("--addr must be a loopback address, got {}", args.addr);
    }
    if args.descriptors != 1 && args.descriptors != 3 {
        bail!("--descriptors must be 1 or 3");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be between 0 and 3600 seconds");
    }
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = Channel::from_shared(format!("http://{}", args.addr))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        channels.push(channel);
    }
    let args = std::sync::Arc::new(args);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for i in 0..args.concurrency.max(1) {
        let client = RateLimitServiceClient::new(channels[i % channels.len()].clone());
        let args = std::sync::Arc::clone(&args);
        tasks.push(tokio::spawn(async move {
            worker(client, &args, 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1), until).await
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await?;
        total.latencies_us.extend(t.latencies_us);
        total.ok += t.ok;
        total.over_limit += t.over_limit;
        total.errors += t.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let decisions = total.ok + total.over_limit;
    let report = serde_json::json!({
        "decisions_per_sec": (decisions as f64 / elapsed).round(),
        "decisions": decisions,
        "ok": total.ok,
        "over_limit": total.over_limit,
        "errors": total.errors,
        "p50_us": percentile(&total.latencies_us, 0.50),
        "p99_us": percentile(&total.latencies_us, 0.99),
        "p999_us": percentile(&total.latencies_us, 0.999),
        "concurrency": args.concurrency,
        "descriptors": args.descriptors,
        "keys": args.keys,
        "duration_s": (elapsed * 1000.0).round() / 1000.0,
    });
    println!("{report}");
    Ok(())
}
