//! Benchmark plumbing: wrk runs against loopback Envoys and a table of side-by-side figures.
//! Every figure in one table is measured in the same run with the same load settings; ratios
//! are computed against a baseline from that run, never against remembered numbers.

use anyhow::{bail, Context, Result};
use std::process::Command;
use std::time::Duration;

/// HTTP load settings shared by every row of a table.
#[derive(Debug, Clone)]
pub struct Load {
    pub connections: u32,
    pub duration: Duration,
    pub warmup: Duration,
}

impl Default for Load {
    fn default() -> Self {
        let secs = std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(8);
        Self {
            connections: 16,
            duration: Duration::from_secs(secs),
            warmup: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// The latency distribution of one fixed-rate run ([`paced_profile`]), in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Profile {
    pub rps: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Profile {
    pub fn figures(&self) -> Figures {
        Figures {
            rps: self.rps,
            p50_us: self.p50_us,
            p99_us: self.p99_us,
        }
    }
}

/// Runs wrk (one thread) against a loopback URL; returns requests/s and latency percentiles.
pub fn wrk(url: &str, headers: &[(&str, &str)], load: &Load) -> Result<Figures> {
    wrk_with(url, headers, None, load)
}

/// A wrk Lua script that sends `GET <path>` with `Authorization: Bearer <token>`, cycling
/// through the tokens in `tokens_file` (one per line) so each request carries the next one.
pub fn token_rotation_script(path: &str, tokens_file: &std::path::Path) -> String {
    format!(
        "local tokens = {{}}\n\
         for line in io.lines(\"{}\") do tokens[#tokens + 1] = line end\n\
         local i = 0\n\
         request = function()\n\
           i = i % #tokens + 1\n\
           return wrk.format(\"GET\", \"{path}\", {{[\"Authorization\"] = \"Bearer \" .. tokens[i]}})\n\
         end\n",
        tokens_file.display()
    )
}

/// Benchmarks send traffic to loopback only.
fn loopback_only(url: &str) -> Result<()> {
    if !url.starts_with("http://127.0.0.1:") {
        bail!("benchmarks only target loopback, not {url}");
    }
    Ok(())
}

/// Open-loop load at a fixed rate, the way wrk2 measures: `load.connections` keep-alive
/// HTTP/1.1 connections, each sending on its own evenly spaced schedule, the schedules offset so
/// the connections interleave (a steady arrival rate, not bursts), each request with the next
/// of `tokens` as a bearer token. Latency runs from the scheduled send time, so a request that
/// had to wait for the one before it counts the wait (no coordinated omission). Fails if any
/// answer is not 2xx. The figures carry the rate reached, over the time until the last answer.
pub async fn paced(url: &str, tokens: &[String], rate: f64, load: &Load) -> Result<Figures> {
    Ok(paced_profile(url, tokens, rate, load).await?.figures())
}

/// [`paced`], with the whole latency distribution (p50, p90, p99, p99.9, max).
pub async fn paced_profile(
    url: &str,
    tokens: &[String],
    rate: f64,
    load: &Load,
) -> Result<Profile> {
    loopback_only(url)?;
    if tokens.is_empty() || rate <= 0.0 {
        bail!("paced load needs tokens and a positive rate");
    }
    let tokens = std::sync::Arc::new(tokens.to_vec());
    paced_run(url, &tokens, rate, load.connections, load.warmup).await?;
    paced_run(url, &tokens, rate, load.connections, load.duration).await
}

async fn paced_run(
    url: &str,
    tokens: &std::sync::Arc<Vec<String>>,
    rate: f64,
    connections: u32,
    duration: Duration,
) -> Result<Profile> {
    use tokio::time::Instant;
    let n = connections.max(1);
    let period = Duration::from_secs_f64(f64::from(n) / rate);
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + duration;
    let mut tasks = Vec::new();
    for k in 0..n {
        let (url, tokens) = (url.to_string(), tokens.clone());
        let client = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(10))
            .build()?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut next = start + period * k / n;
            let mut i = k as usize;
            let mut last = start;
            while next < end {
                // On schedule: the clock starts when the timer fires (tokio's timer has
                // millisecond grain, a client-side delay the server never saw). Behind
                // schedule: it starts at the scheduled time, so the wait counts.
                let from = if Instant::now() < next {
                    tokio::time::sleep_until(next).await;
                    Instant::now()
                } else {
                    next
                };
                let token = &tokens[i % tokens.len()];
                match client.get(&url).bearer_auth(token).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.bytes().await;
                        last = Instant::now();
                        latencies.push(last.duration_since(from).as_micros() as u64);
                    }
                    Ok(resp) => failures.push(resp.status().to_string()),
                    Err(e) => failures.push(e.to_string()),
                }
                i += n as usize;
                next += period;
            }
            (latencies, failures, last)
        }));
    }
    let mut all = Vec::new();
    let mut finished = start;
    for task in tasks {
        let (latencies, failures, last) = task.await?;
        if let Some(f) = failures.first() {
            bail!("{} paced requests failed, e.g. {f}", failures.len());
        }
        all.extend(latencies);
        finished = finished.max(last);
    }
    if all.is_empty() {
        bail!("no paced request completed");
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize] as f64;
    Ok(Profile {
        // Over the time the answers took, not the schedule: a target that cannot keep up
        // finishes late and shows the lower rate.
        rps: all.len() as f64 / finished.duration_since(start).as_secs_f64().max(1e-3),
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: pct(1.0),
    })
}

/// The same, optionally driven by a wrk Lua script (e.g. [`token_rotation_script`]).
pub fn wrk_with(
    url: &str,
    headers: &[(&str, &str)],
    script: Option<&std::path::Path>,
    load: &Load,
) -> Result<Figures> {
    loopback_only(url)?;
    let wrk = crate::tools::system_bin("wrk")?;
    let run = |d: Duration| -> Result<String> {
        let mut cmd = Command::new(&wrk);
        cmd.args(["-t1", "--latency"])
            .arg(format!("-c{}", load.connections))
            .arg(format!("-d{}s", d.as_secs().max(1)));
        for (n, v) in headers {
            cmd.arg("-H").arg(format!("{n}: {v}"));
        }
        if let Some(script) = script {
            cmd.arg("-s").arg(script);
        }
        let out = cmd.arg(url).output().context("running wrk")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(text)
    };
    run(load.warmup)?;
    parse_wrk(&run(load.duration)?)
}

/// With `BENCH_PERF_DIR` set, records the whole machine with `perf` (cpu-clock, 1999 Hz) into
/// `$BENCH_PERF_DIR/<label>.data` while a wrk run started now measures (its warmup skipped);
/// `None` otherwise. `perf report -i F --comm wrk:worker_0 --sort dso` then splits the Envoy
/// worker's time between Envoy, V8's generated code (`[JIT]`), libc and the kernel.
fn perf_during(label: &str, load: &Load) -> Result<Option<std::process::Child>> {
    let Some(dir) = std::env::var_os("BENCH_PERF_DIR") else {
        return Ok(None);
    };
    let perf = crate::tools::system_bin("perf")?;
    let out = std::path::Path::new(&dir).join(format!("{label}.data"));
    let child = Command::new(perf)
        .args(["record", "-q", "-e", "cpu-clock", "-F", "1999", "-a", "-D"])
        .arg(load.warmup.as_millis().to_string())
        .arg("-o")
        .arg(out)
        .args(["--", "sleep"])
        .arg(load.duration.as_secs().max(1).to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting perf")?;
    Ok(Some(child))
}

/// [`wrk_with`], recorded with perf under `label` when `BENCH_PERF_DIR` is set ([`perf_during`]).
pub fn wrk_recorded(
    label: &str,
    url: &str,
    headers: &[(&str, &str)],
    script: Option<&std::path::Path>,
    load: &Load,
) -> Result<Figures> {
    let perf = perf_during(label, load)?;
    let figures = wrk_with(url, headers, script, load);
    if let Some(mut p) = perf {
        p.wait().context("waiting for perf")?;
    }
    figures
}

/// Parses wrk's `--latency` report.
pub fn parse_wrk(text: &str) -> Result<Figures> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = parse_duration_us(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_duration_us(v.trim());
        }
        if line.contains("Non-2xx or 3xx responses") {
            bail!("the benchmark target answered errors: {line}\n{text}");
        }
        if line.starts_with("Socket errors") {
            bail!("wrk saw socket errors: {line}\n{text}");
        }
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50_us), Some(p99_us)) => Ok(Figures {
            rps,
            p50_us,
            p99_us,
        }),
        _ => bail!("could not parse wrk output:\n{text}"),
    }
}

fn parse_duration_us(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => return None,
    })
}

/// One table: rows of figures, printed with ratios to named baselines.
#[derive(Debug, Default)]
pub struct Table {
    title: String,
    rows: Vec<(String, String, Figures)>,
}

impl Table {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            rows: Vec::new(),
        }
    }

    pub fn add(&mut self, key: &str, label: &str, f: Figures) {
        eprintln!("  {key:>4}  {label:<58} {:>9.0} req/s", f.rps);
        self.rows.push((key.to_string(), label.to_string(), f));
    }

    pub fn get(&self, key: &str) -> Option<Figures> {
        self.rows
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, f)| *f)
    }

    pub fn ratio(&self, num: &str, den: &str) -> Option<f64> {
        Some(self.get(num)?.rps / self.get(den)?.rps)
    }

    /// Markdown: the rows, then each `(numerator, denominator, target)` ratio.
    pub fn render(&self, ratios: &[(&str, &str, Option<f64>)]) -> String {
        let mut s = format!(
            "### {}\n\n| row | configuration | req/s | p50 | p99 |\n|---|---|---:|---:|---:|\n",
            self.title
        );
        for (k, label, f) in &self.rows {
            s.push_str(&format!(
                "| {k} | {label} | {:.0} | {:.0} us | {:.0} us |\n",
                f.rps, f.p50_us, f.p99_us
            ));
        }
        if !ratios.is_empty() {
            s.push_str("\n| ratio | value | target | met |\n|---|---:|---:|---|\n");
            for (n, d, target) in ratios {
                if let Some(r) = self.ratio(n, d) {
                    let (t, met) = match target {
                        Some(t) => (format!(">= {t:.2}"), if r >= *t { "yes" } else { "NO" }),
                        None => ("-".to_string(), "-"),
                    };
                    s.push_str(&format!("| {n}/{d} | {r:.2} | {t} | {met} |\n"));
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latency_report() {
        let text = "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 16 connections\n  Latency Distribution\n     50%  512.00us\n     75%    1.00ms\n     99%    2.50ms\n  1000 requests in 1.00s, 1.00MB read\nRequests/sec:   9876.54\nTransfer/sec:      1.00MB\n";
        let f = parse_wrk(text).unwrap();
        assert_eq!(f.rps, 9876.54);
        assert_eq!(f.p50_us, 512.0);
        assert_eq!(f.p99_us, 2500.0);
        assert!(parse_wrk("Requests/sec: 1\n  Non-2xx or 3xx responses: 5\n").is_err());
    }

    #[tokio::test]
    async fn paced_load_keeps_its_schedule_and_rotates_tokens() {
        let up = crate::upstream::Upstream::start(|_| crate::upstream::Reply::new(200))
            .await
            .unwrap();
        let url = format!("http://127.0.0.1:{}/x", up.port());
        let tokens: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
        let load = Load {
            connections: 4,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(200),
        };
        let f = paced(&url, &tokens, 200.0, &load).await.unwrap();
        // 4 connections at 50/s each over 1 s, plus the warmup's 40: the schedule, exactly.
        assert_eq!(up.hits(), 240);
        // The rate runs to the last answer, after the last scheduled send (at 0.995 s): never
        // above the schedule's 200/s.
        assert!(f.rps > 0.0 && f.rps <= 201.0, "reached {}/s", f.rps);
        assert!(f.p50_us > 0.0 && f.p50_us <= f.p99_us);
        let seen: std::collections::BTreeSet<_> = up
            .requests()
            .iter()
            .filter_map(|r| r.header("authorization"))
            .collect();
        assert_eq!(seen.len(), 3, "every token used: {seen:?}");
    }

    #[tokio::test]
    async fn paced_load_fails_on_a_refusal_and_off_loopback() {
        let up = crate::upstream::Upstream::start(|_| crate::upstream::Reply::new(429))
            .await
            .unwrap();
        let url = format!("http://127.0.0.1:{}/x", up.port());
        let load = Load {
            connections: 1,
            duration: Duration::from_millis(100),
            warmup: Duration::from_millis(50),
        };
        let err = paced(&url, &["t".into()], 50.0, &load).await.unwrap_err();
        assert!(err.to_string().contains("429"), "{err}");
        assert!(paced("http://192.0.2.1:80/", &["t".into()], 50.0, &load)
            .await
            .is_err());
    }
}
