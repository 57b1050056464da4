//! `make bench`: side-by-side figures measured in one run, on loopback, one Envoy worker.
//!
//! Usage: gateway-bench [SECTION...]   sections: floor, filters, jwt, ratelimit, stage, tenant, chain,
//! profile, gateway, aggregate (default: all)
//! BENCH_SECONDS sets the measured duration of each row (default 8); BENCH_ROUNDS how many
//! interleaved rounds the chain and gateway sections take the median of (default 3).
//! BENCH_PERF_DIR=dir records each saturation row with `perf` into dir/<row>.data.

use anyhow::{Context, Result};
use gateway_tests::bench::{
    paced, token_rotation_script, wrk_recorded, wrk_with, Figures, Load, Table,
};
use gateway_tests::chain;
use gateway_tests::envoy::{Envoy, EnvoyBuilder};
use gateway_tests::stages;
use gateway_tests::template::yaml_string;
use serde_json::{json, Value};
use transform::bench_fixture::{sample_body, STRIP_FIVE};

mod aggregate;
mod chained;
mod filters;
mod floor;
mod gateway;
mod jwt;
mod profile;
mod ratelimit;
mod stage;
mod tenant;

use aggregate::aggregate_section;
use chained::chain_section;
use filters::filters_section;
use floor::floor_section;
use gateway::gateway_section;
use jwt::jwt_section;
use profile::profile_section;
use ratelimit::ratelimit_section;
use stage::stage_section;
use tenant::tenant_section;

/// The strip benchmark's ~16 KB document: the same one the native micro-benchmark
/// (`filters/transform/examples/strip_bench.rs`) rewrites, so the figures compare.
fn json_16k() -> String {
    String::from_utf8_lossy(&sample_body(16 * 1024)).into_owned()
}

async fn measure(name: &str, filters: Vec<Value>, path: &str, load: &Load) -> Result<Figures> {
    measure_with(name, filters, path, &[], load).await
}

/// `measure` with extra request headers (on top of the two every row sends).
async fn measure_with(
    name: &str,
    filters: Vec<Value>,
    path: &str,
    extra_headers: &[(&'static str, &'static str)],
    load: &Load,
) -> Result<Figures> {
    let mut headers = vec![("x-debug", "1"), ("x-client", "bench")];
    headers.extend_from_slice(extra_headers);
    measure_driven(name, filters, path, Drive::Header(&headers), load).await
}

/// How wrk drives one row: fixed headers, or a Lua script (e.g. a token rotation).
enum Drive<'a> {
    Header(&'a [(&'a str, &'a str)]),
    Script(&'a std::path::Path),
}

async fn measure_driven(
    name: &str,
    filters: Vec<Value>,
    path: &str,
    drive: Drive<'_>,
    load: &Load,
) -> Result<Figures> {
    let envoy = bench_envoy(name, filters).await?;
    let url = envoy.url("main", path);
    let load = load.clone();
    let (headers, script): (Vec<(String, String)>, Option<std::path::PathBuf>) = match drive {
        Drive::Header(h) => (
            h.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            None,
        ),
        Drive::Script(p) => (Vec::new(), Some(p.to_path_buf())),
    };
    let label = name.to_string();
    let figures = tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        wrk_recorded(&label, &url, &h, script.as_deref(), &load)
    })
    .await??;
    drop(envoy);
    Ok(figures)
}

/// How long the benchmark tokens stay valid: longer than any section runs (the profile takes
/// about 25 minutes at the default 8 s per row), within the providers' 3600 s `max_lifetime`.
const TOKEN_LIFETIME_SECS: u64 = 3000;

/// `n` valid RS256 tokens (kid `rsa-1`, signed in-process), one per line, valid for
/// [`TOKEN_LIFETIME_SECS`]; `edit` changes the claims of token `i`.
fn rs256_tokens(now: u64, n: usize, edit: impl Fn(usize, &mut Value)) -> String {
    use jwt_auth::testing::{b64, claims, keys};
    let mut out = String::new();
    for i in 0..n {
        let mut c = claims(now);
        c["exp"] = json!(now + TOKEN_LIFETIME_SECS);
        edit(i, &mut c);
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "RS256", "kid": "rsa-1"}).to_string()),
            b64(c.to_string())
        );
        out.push_str(&format!(
            "{input}.{}\n",
            b64(keys().rsa.rs256(input.as_bytes()))
        ));
    }
    out
}

/// The bench template with `filters`, one worker.
async fn bench_envoy(name: &str, filters: Vec<Value>) -> Result<Envoy> {
    EnvoyBuilder::from_repo_file(name, "tests/envoy/bench.yaml")?
        .var("HTTP_FILTERS", chain::with_router(filters))
        .var("JSON_BODY", yaml_string(&json_16k()))
        .concurrency(1)
        .start()
        .await
}

/// Saturation rows: one wrk run per `(key, label, url)`, each request with the next token of
/// the rotation script.
async fn saturate(
    t: &mut Table,
    rows: &[(&'static str, &'static str, String)],
    script_path: &std::path::Path,
    load: &Load,
) -> Result<()> {
    // Rounds interleave the rows, so a drift in what else the two cores do falls on every
    // row alike; each row keeps its median round (by req/s).
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); rows.len()];
    for _ in 0..rounds {
        for ((key, _, url), got) in rows.iter().zip(&mut runs) {
            let (u, s, l) = (url.clone(), script_path.to_path_buf(), load.clone());
            let k = *key;
            let figures =
                tokio::task::spawn_blocking(move || wrk_recorded(k, &u, &[], Some(&s), &l));
            got.push(figures.await?.with_context(|| format!("row {key}"))?);
        }
    }
    for ((key, label, _), mut got) in rows.iter().zip(runs) {
        got.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        if let Some(f) = got.get(got.len() / 2) {
            t.add(key, label, *f);
        }
    }
    Ok(())
}

/// The header of the fixed-rate latency table.
const PACED_HEADER: &str = "\n| rate | row | req/s reached | p50 | p99 | added p50 | added p99 | targets (<= 1 ms, <= 5 ms) |\n\
                            |---|---|---:|---:|---:|---:|---:|---|\n";

/// Fixed-rate rows: open-loop load at `rate` (see [`paced`]) against each target in turn;
/// added latency against the first target (the no-filter configuration, which shows "-").
async fn paced_rows(
    what: &str,
    rate: f64,
    targets: &[&(&'static str, &'static str, String)],
    tokens: &[String],
    load: &Load,
) -> Result<String> {
    let mut out = String::new();
    let mut base: Option<Figures> = None;
    for (key, _, url) in targets {
        let f = paced(url, tokens, rate, load).await?;
        eprintln!(
            "  {key:>6}  at {rate:.0}/s: reached {:.0}/s, p50 {:.0} us, p99 {:.0} us",
            f.rps, f.p50_us, f.p99_us
        );
        let is_base = base.is_none();
        let b = *base.get_or_insert(f);
        let (add50, add99) = (f.p50_us - b.p50_us, f.p99_us - b.p99_us);
        let met = if is_base {
            "-"
        } else if add50 <= 1000.0 && add99 <= 5000.0 {
            "yes"
        } else {
            "NO"
        };
        out.push_str(&format!(
            "| {what}: {rate:.0}/s | {key} | {:.0} | {:.0} us | {:.0} us | {add50:.0} us | {add99:.0} us | {met} |\n",
            f.rps, f.p50_us, f.p99_us
        ));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s || a == "all");
    let load = Load::default();
    let mut report = String::new();
    if want("floor") {
        report.push_str(&floor_section(&load).await?);
        report.push('\n');
    }
    if want("ratelimit") {
        report.push_str(&ratelimit_section(&load).await?);
    }
    if want("stage") {
        report.push_str(&stage_section(&load).await?);
        report.push('\n');
    }
    if want("jwt") {
        report.push_str(&jwt_section(&load).await?);
        report.push('\n');
    }
    if want("filters") {
        report.push_str(&filters_section(&load).await?);
        report.push('\n');
    }
    if want("tenant") {
        report.push_str(&tenant_section(&load).await?);
        report.push('\n');
    }
    if want("chain") {
        report.push_str(&chain_section(&load).await?);
        report.push('\n');
    }
    if want("profile") {
        report.push_str(&profile_section(&load).await?);
        report.push('\n');
    }
    if want("gateway") {
        report.push_str(&gateway_section(&load).await?);
        report.push('\n');
    }
    if want("aggregate") {
        report.push_str(&aggregate_section(&load).await?);
        report.push('\n');
    }
    println!("{report}");
    // A full run is the record: docs/benchmarks.md is written from it, never by hand.
    if args.is_empty() || args.iter().any(|a| a == "all") {
        let path = gateway_tests::tools::repo_root().join("docs/benchmarks.md");
        std::fs::write(&path, benchmarks_page(&report, &load))?;
        eprintln!("gateway-bench: wrote {}", path.display());
    }
    Ok(())
}

/// docs/benchmarks.md: how the figures were made, then the run's tables as printed.
fn benchmarks_page(report: &str, load: &Load) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "# Benchmark results\n\n\
         Written by `make bench` (`gateway-bench`, every section) on {date}: {cores} cores, \
         {cpu}; {} connections, {} s per row after {} s of warm-up. Do not edit by hand: re-run `make bench` to refresh. Every ratio \
         compares rows measured in this same run; how to read each table and what bounds the \
         figures is in [performance.md](performance.md).\n\n{report}",
        load.connections,
        load.duration.as_secs(),
        load.warmup.as_secs(),
    )
}
