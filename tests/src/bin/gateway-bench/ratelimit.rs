//! ratelimit-service: decisions per second against a Lua ceiling, latency, memory.

use super::*;

/// Runs `target/release/rls-load` against a service; returns its JSON report.
fn rls_load(
    grpc: std::net::SocketAddr,
    concurrency: u32,
    descriptors: u32,
    secs: u64,
) -> Result<Value> {
    let bin = gateway_tests::tools::repo_root().join("target/release/rls-load");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: run `make build`",
        bin.display()
    );
    let out = std::process::Command::new(bin)
        .args(["--addr", &grpc.to_string(), "--keys", "1000"])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--descriptors", &descriptors.to_string()])
        .args(["--duration", &secs.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "rls-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(
        report["errors"].as_u64() == Some(0),
        "rls-load saw errors: {report}"
    );
    Ok(report)
}

/// The raw Lua script driven by redis-benchmark at the same concurrency: the ceiling.
fn lua_ceiling(redis_port: u16, concurrency: u32, descriptors: u32) -> Result<f64> {
    let script = gateway_tests::tools::repo_root().join("ratelimit-service/bench/lua-baseline.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args([
            redis_port.to_string(),
            concurrency.to_string(),
            "1000".into(),
            descriptors.to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "lua-baseline.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["lua_calls_per_sec"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("no rate in {v}"))
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`: resident now, `VmHWM`: the peak).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(super) async fn ratelimit_section(load: &Load) -> Result<String> {
    use gateway_tests::ratelimit::RateLimitService;
    use gateway_tests::redis::RedisServer;
    let secs = load.duration.as_secs();
    eprintln!("ratelimit: rls-load (1 thread, 4 HTTP/2 connections, 1,000 keys), {secs}s per row");
    let redis = RedisServer::start()?;
    let config = std::fs::read_to_string(
        gateway_tests::tools::repo_root().join("ratelimit-service/bench/config.yaml"),
    )?;
    let svc = RateLimitService::start(&redis.url(), &config, &[]).await?;
    let mut out = String::from(
        "### ratelimit-service (ShouldRateLimit, one Redis, concurrency 32 unless noted)\n\n\
         | row | configuration | decisions/s | p50 | p99 | p999 | ceiling (Lua via redis-benchmark) | ratio |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut row = |key: &str, label: &str, r: &Value, ceiling: Option<f64>| {
        let rate = r["decisions_per_sec"].as_f64().unwrap_or(0.0);
        eprintln!("  {key:>4}  {label:<58} {rate:>9.0} decisions/s");
        let (c, ratio) = match ceiling {
            Some(c) => (format!("{c:.0}"), format!("{:.2}", rate / c)),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {key} | {label} | {rate:.0} | {} us | {} us | {} us | {c} | {ratio} |\n",
            r["p50_us"], r["p99_us"], r["p999_us"]
        ));
        rate
    };
    let grpc = svc.grpc_addr();
    let c1 = lua_ceiling(redis.port(), 32, 1)?;
    let before = RedisUse::read(&redis)?;
    let r1 = rls_load(grpc, 32, 1, secs)?;
    let r1_use = RedisUse::read(&redis)?.since(&before, &r1);
    let sat1 = row("r1", "1 descriptor", &r1, Some(c1));
    // The same load with coalescing off: one script call per decision, all in flight at once.
    let single =
        RateLimitService::start(&redis.url(), &config, &["--redis-batch-limit", "1"]).await?;
    let before = RedisUse::read(&redis)?;
    let u1 = rls_load(single.grpc_addr(), 32, 1, secs)?;
    let u1_use = RedisUse::read(&redis)?.since(&before, &u1);
    let unbatched = row(
        "u1",
        "1 descriptor, coalescing off (--redis-batch-limit 1)",
        &u1,
        Some(c1),
    );
    drop(single);
    let c3 = lua_ceiling(redis.port(), 32, 3)?;
    let r3 = rls_load(grpc, 32, 3, secs)?;
    row("r3", "3 descriptors", &r3, Some(c3));
    let half = rls_load(grpc, 2, 1, secs)?;
    let half_rate = row(
        "h1",
        "1 descriptor, concurrency 2 (latency well below saturation)",
        &half,
        None,
    );
    drop(svc);

    // Every key over its limit: answered from the local over-limit cache, no Redis call.
    let over = "domain: bench\ndescriptors:\n  - key: k1\n    rate_limit: { unit: hour, requests_per_unit: 1 }\n";
    let svc = RateLimitService::start(&redis.url(), over, &[]).await?;
    let _warm = rls_load(svc.grpc_addr(), 32, 1, 1)?;
    let cached = rls_load(svc.grpc_addr(), 32, 1, secs)?;
    let cached_rate = row(
        "lc",
        "1 descriptor, every key over limit (local cache)",
        &cached,
        None,
    );
    drop(svc);

    // The service's own ceiling: the same calls with no storage round trip at all (in-memory
    // buckets). No answer path, the local cache included, can beat it.
    let svc = RateLimitService::start(&redis.url(), &config, &["--store", "memory"]).await?;
    let mem = rls_load(svc.grpc_addr(), 32, 1, secs)?;
    let mem_rate = row(
        "m1",
        "1 descriptor, in-memory store (no Redis: gRPC + service only)",
        &mem,
        None,
    );
    drop(svc);

    // Memory with a 10,000-descriptor configuration.
    let mut big = String::from("domain: big\ndescriptors:\n");
    for i in 0..10_000 {
        big.push_str(&format!(
            "  - key: k{i}\n    rate_limit: {{ unit: minute, requests_per_unit: {} }}\n",
            10 + i
        ));
    }
    let svc = RateLimitService::start(&redis.url(), &big, &[]).await?;
    // Steady state: the allocator returns the config parser's garbage within milliseconds;
    // the peak (VmHWM) is reported too.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let rss = svc.pid().and_then(|p| status_kib(p, "VmRSS:")).unwrap_or(0);
    let peak = svc.pid().and_then(|p| status_kib(p, "VmHWM:")).unwrap_or(0);
    drop(svc);

    out.push_str(&format!(
        "\n- decisions/s vs the Lua ceiling (1 descriptor): {:.2} (target >= 0.6); coalesced vs one call per decision: {:.2}x\n\
         - Redis per decision, coalesced: {:.1} us of Redis CPU, {:.1} decisions per script call; one call per decision: {:.1} us, {:.1}\n\
         - at concurrency 2 ({half_rate:.0}/s, {:.0}% of the concurrency-32 rate): p99 {} us (target <= 1000 us at half of saturation)\n\
         - local over-limit cache vs the Redis path: {:.1}x (target >= 3x); the in-memory store, with no storage call at all, reaches {:.1}x: the gRPC and service path bound any answer\n\
         - RSS with a 10,000-descriptor config: {:.1} MB (target <= 50 MB; peak while parsing it {:.1} MB)\n",
        sat1 / c1,
        sat1 / unbatched,
        r1_use.0,
        r1_use.1,
        u1_use.0,
        u1_use.1,
        100.0 * half_rate / sat1,
        half["p99_us"],
        cached_rate / sat1,
        mem_rate / sat1,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
    ));
    Ok(out)
}

/// Redis's own CPU time (INFO cpu, seconds) and script calls (INFO commandstats) so far.
struct RedisUse {
    cpu_secs: f64,
    script_calls: f64,
}

impl RedisUse {
    fn read(redis: &gateway_tests::redis::RedisServer) -> Result<Self> {
        let field = |text: &str, name: &str| -> f64 {
            text.lines()
                .filter_map(|l| l.strip_prefix(name))
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .sum()
        };
        let cpu = redis.command("INFO cpu")?;
        Ok(RedisUse {
            cpu_secs: field(&cpu, "used_cpu_sys:") + field(&cpu, "used_cpu_user:"),
            script_calls: redis.script_calls()? as f64,
        })
    }

    /// (Redis CPU microseconds per decision, decisions per script call) of the `report`'s run.
    fn since(&self, before: &RedisUse, report: &Value) -> (f64, f64) {
        let decisions = report["decisions"].as_f64().unwrap_or(0.0).max(1.0);
        let calls = (self.script_calls - before.script_calls).max(1.0);
        (
            (self.cpu_secs - before.cpu_secs) * 1e6 / decisions,
            decisions / calls,
        )
    }
}
