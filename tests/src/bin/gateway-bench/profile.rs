//! The latency profile: p50, p90, p99, p99.9 and max of each chain row at 25, 50 and 75 % of
//! its own saturation, against no filter at the same rate, over several rounds (the median of
//! each figure, and the spread of p99 across rounds).
//!
//! `BENCH_PIN=1` pins every Envoy to CPU 0 and this process (the load generator) to CPU 1, to
//! tell the gateway's stalls from the load generator's. `BENCH_PROFILE_ROWS=pass,pass-meta`
//! profiles other chain rows (any key of the chain section) instead of [`ROWS`].

use super::chained::{chain_rows, chain_tokens};
use super::*;
use gateway_tests::bench::{paced_profile, Profile};

/// The rows profiled by default, each against `none`.
const ROWS: [&str; 6] = ["pass", "jwt", "tenant", "tr", "three", "bundle"];
/// The loads, as fractions of the row's saturation.
const LOADS: [f64; 3] = [0.25, 0.5, 0.75];

pub(super) async fn profile_section(load: &Load) -> Result<String> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let pin = std::env::var_os("BENCH_PIN").is_some();
    let wanted: Vec<String> = match std::env::var("BENCH_PROFILE_ROWS") {
        Ok(list) => list.split(',').map(|k| k.trim().to_string()).collect(),
        Err(_) => ROWS.iter().map(|k| k.to_string()).collect(),
    };
    eprintln!("profile: {rounds} rounds per load, pinned: {pin}");
    let dir = tempfile::tempdir()?;
    let (tokens, script_path) = chain_tokens(dir.path())?;
    let rows: Vec<_> = chain_rows()?
        .into_iter()
        .filter(|(k, _, _)| *k == "none" || wanted.iter().any(|w| w == k))
        .collect();
    if pin {
        taskset(std::process::id(), "1")?;
    }
    let mut envoys = Vec::new();
    for (key, _, filters) in &rows {
        let envoy = bench_envoy(key, filters.clone()).await?;
        if let (true, Some(pid)) = (pin, envoy.pid()) {
            taskset(pid, "0")?;
        }
        envoys.push(envoy);
    }
    let targets: Vec<_> = rows
        .iter()
        .zip(&envoys)
        .map(|((key, label, _), e)| (*key, *label, e.url("main", "/api/users/42")))
        .collect();
    let mut t = Table::new("Saturation of the profiled rows (wrk -t1 -c16, direct_response)");
    saturate(&mut t, &targets, &script_path, load).await?;
    let mut out = t.render(&[]);
    out.push_str(&format!(
        "\n### Latency profile ({rounds} rounds per load; median of each figure, p99's spread \
         across rounds in brackets; pinned: {pin})\n\n\
         | row | load | rate | p50 | p90 | p99 | p99.9 | max | none p99 at that rate | added p99 |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    ));
    let url = |k: &str| targets.iter().find(|(key, _, _)| *key == k).map(|t| &t.2);
    let none = url("none").ok_or_else(|| anyhow::anyhow!("no none row"))?;
    for key in &wanted {
        let (Some(row), Some(sat)) = (url(key), t.get(key)) else {
            continue;
        };
        for share in LOADS {
            let rate = sat.rps * share;
            let (mut base, mut got) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                base.push(paced_profile(none, &tokens, rate, load).await?);
                got.push(paced_profile(row, &tokens, rate, load).await?);
            }
            let (b, g) = (median(&base), median(&got));
            let (lo, hi) = spread(&got, |p| p.p99_us);
            eprintln!(
                "  {key:>6} at {:.0}% ({rate:.0}/s): p99 {:.0} us [{lo:.0}-{hi:.0}], none {:.0} us",
                share * 100.0,
                g.p99_us,
                b.p99_us
            );
            out.push_str(&format!(
                "| {key} | {:.0} % | {rate:.0}/s | {:.0} us | {:.0} us | {:.0} us [{lo:.0}-{hi:.0}] | {:.0} us | {:.0} us | {:.0} us | {:.0} us |\n",
                share * 100.0,
                g.p50_us,
                g.p90_us,
                g.p99_us,
                g.p999_us,
                g.max_us,
                b.p99_us,
                g.p99_us - b.p99_us,
            ));
        }
    }
    drop(envoys);
    Ok(out)
}

/// Each figure's median over the rounds.
fn median(runs: &[Profile]) -> Profile {
    let pick = |f: fn(&Profile) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Profile {
        rps: pick(|p| p.rps),
        p50_us: pick(|p| p.p50_us),
        p90_us: pick(|p| p.p90_us),
        p99_us: pick(|p| p.p99_us),
        p999_us: pick(|p| p.p999_us),
        max_us: pick(|p| p.max_us),
    }
}

fn spread(runs: &[Profile], f: fn(&Profile) -> f64) -> (f64, f64) {
    let v = runs.iter().map(f);
    let lo = v.clone().fold(f64::INFINITY, f64::min);
    (lo, v.fold(0.0, f64::max))
}

/// Pins every thread of `pid` to `cpus` (taskset's list syntax).
fn taskset(pid: u32, cpus: &str) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-cp", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    anyhow::ensure!(status.success(), "taskset -a -cp {cpus} {pid}: {status}");
    Ok(())
}
