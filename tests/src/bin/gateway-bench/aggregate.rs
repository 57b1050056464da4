//! Aggregation: one aggregated GET of three legs against the client making the three calls
//! itself over one keep-alive connection, and against the slowest leg alone, through the same
//! Envoy and the same upstream, one request at a time (latency, not throughput).

use super::*;
use gateway_tests::upstream::{Reply, Upstream};
use std::time::{Duration, Instant};

/// Each leg's scripted delay: the slowest is the one the aggregate waits for.
const LEG_DELAYS_MS: [u64; 3] = [10, 15, 20];
/// Requests per row at most (each row also stops after the load's duration).
const MAX_REQUESTS: usize = 2_000;

pub(super) async fn aggregate_section(load: &Load) -> Result<String> {
    let up = Upstream::start(|r| {
        let leg = r.path.trim_start_matches("/slow/");
        let i: usize = leg.parse().unwrap_or(1);
        let ms = LEG_DELAYS_MS.get(i.saturating_sub(1)).copied().unwrap_or(0);
        Reply::json(200, &json!({ "leg": i, "items": [1, 2, 3] })).delay(Duration::from_millis(ms))
    })
    .await?;
    let legs: Vec<Value> = (1..=3)
        .map(|i| json!({ "name": format!("leg{i}"), "cluster": "svc", "path": format!("/slow/{i}") }))
        .collect();
    let config = json!({ "endpoints": { "parallel": { "legs": legs } }, "routes": { "parallel": "parallel" } });
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let envoy = EnvoyBuilder::from_repo_file("aggregate-bench", "tests/envoy/aggregate.yaml")?
        .var(
            "HTTP_FILTERS",
            chain::with_router(vec![chain::wasm("aggregate", &config)?]),
        )
        .var("SVC_PORT", up.port())
        .var("DOWN_PORT", closed)
        .concurrency(1)
        .start()
        .await?;
    eprintln!(
        "aggregate: legs of {LEG_DELAYS_MS:?} ms, one request at a time, {}s per row",
        load.duration.as_secs()
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = |p: &str| envoy.url("main", p);
    let one = [url("/slow/3")];
    let three = [url("/slow/1"), url("/slow/2"), url("/slow/3")];
    let aggregated = [url("/agg/parallel")];
    // Warm-up: connections open, the plugin's first calls made.
    timed(&client, &aggregated, Duration::from_secs(1)).await?;
    timed(&client, &three, Duration::from_secs(1)).await?;
    let cpu_before = cpu_ticks(envoy.pid());
    let agg = timed(&client, &aggregated, load.duration).await?;
    let cpu_ticks_used = cpu_ticks(envoy.pid()).saturating_sub(cpu_before);
    let seq = timed(&client, &three, load.duration).await?;
    let cpu_before = cpu_ticks(envoy.pid());
    let alone = timed(&client, &one, load.duration).await?;
    let alone_ticks = cpu_ticks(envoy.pid()).saturating_sub(cpu_before);
    // Linux USER_HZ: 100 ticks a second.
    let per_request = |ticks: u64, n: usize| ticks as f64 * 1e4 / n.max(1) as f64;
    let cpu_us = per_request(cpu_ticks_used, agg.len());
    let alone_cpu_us = per_request(alone_ticks, alone.len());

    let mut out = String::from(
        "### Aggregation (3 legs of 10, 15 and 20 ms; one request at a time)\n\n\
         | row | what the client does | requests | p50 | p99 |\n|---|---|---:|---:|---:|\n",
    );
    for (key, label, v) in [
        (
            "a3",
            "one aggregated GET (the stage calls the 3 legs)",
            &agg,
        ),
        ("c3", "the 3 calls itself, one keep-alive connection", &seq),
        ("s1", "the slowest leg (20 ms) alone", &alone),
    ] {
        out.push_str(&format!(
            "| {key} | {label} | {} | {:.1} ms | {:.1} ms |\n",
            v.len(),
            pct(v, 0.50),
            pct(v, 0.99)
        ));
    }
    out.push_str(&format!(
        "\n- aggregated p50 vs the slowest leg alone: {:.2}x (target <= 1.2x)\n\
         - aggregated p50 vs the client's own three calls: {:.2}x\n\
         - Envoy CPU per request (all its threads, /proc/<pid>/stat over the row, so Envoy's \
         background work at this low rate is included): aggregated (a3) {cpu_us:.0} us, the \
         single proxied call (s1) {alone_cpu_us:.0} us\n",
        pct(&agg, 0.50) / pct(&alone, 0.50),
        pct(&agg, 0.50) / pct(&seq, 0.50),
    ));
    Ok(out)
}

/// Sends the `urls` one after another, again and again, for `duration` (at most
/// [`MAX_REQUESTS`] rounds); returns each round's time to the last complete answer, in ms,
/// sorted.
async fn timed(client: &reqwest::Client, urls: &[String], duration: Duration) -> Result<Vec<f64>> {
    let stop = Instant::now() + duration;
    let mut times = Vec::new();
    while Instant::now() < stop && times.len() < MAX_REQUESTS {
        let start = Instant::now();
        for u in urls {
            let resp = client.get(u).send().await?;
            anyhow::ensure!(resp.status() == 200, "{u}: {}", resp.status());
            resp.bytes().await?;
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// The `q` quantile of sorted values (0 when empty).
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A process's user + system CPU time in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: Option<u32>) -> u64 {
    let Some(stat) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
    else {
        return 0;
    };
    // The command may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let at = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    at(11) + at(12)
}
