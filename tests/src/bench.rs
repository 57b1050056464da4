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

/// A wrk Lua `delay` function that holds each connection `mean_ms` between a response and its
/// next request on average (whole milliseconds, mixed to reach the mean). Appended to a script
/// that defines `request` (e.g. [`token_rotation_script`]), it paces the load near
/// `connections / (mean + latency)` requests/s; wrk's latency excludes the delay.
pub fn pacing(mean_ms: f64) -> String {
    format!(
        "local pace_mean = {mean_ms:.4}\n\
         function delay()\n\
           local base = math.floor(pace_mean)\n\
           if math.random() < pace_mean - base then return base + 1 end\n\
           return base\n\
         end\n"
    )
}

/// Runs wrk at about `rate` requests/s: the connections of `load`, each paced by [`pacing`]
/// appended to `script` (written to `dir`). Two one-second runs calibrate the pause against the
/// latency measured at that rate, then the measured run follows; the figures carry the rate
/// reached, which falls short when the target cannot serve `rate`.
pub fn wrk_at_rate(
    url: &str,
    script: &str,
    rate: f64,
    dir: &std::path::Path,
    load: &Load,
) -> Result<Figures> {
    let cycle_ms = f64::from(load.connections) * 1000.0 / rate;
    let mut pause_ms = (cycle_ms - 0.2).max(0.0);
    let path = dir.join("paced.lua");
    let calibrate = Load {
        connections: load.connections,
        duration: Duration::from_secs(1),
        warmup: Duration::from_secs(1),
    };
    for _ in 0..2 {
        std::fs::write(&path, format!("{script}{}", pacing(pause_ms)))?;
        let got = wrk_with(url, &[], Some(&path), &calibrate)?;
        let latency_ms = f64::from(load.connections) * 1000.0 / got.rps - pause_ms;
        pause_ms = (cycle_ms - latency_ms).max(0.0);
    }
    std::fs::write(&path, format!("{script}{}", pacing(pause_ms)))?;
    wrk_with(url, &[], Some(&path), load)
}

/// The same, optionally driven by a wrk Lua script (e.g. [`token_rotation_script`]).
pub fn wrk_with(
    url: &str,
    headers: &[(&str, &str)],
    script: Option<&std::path::Path>,
    load: &Load,
) -> Result<Figures> {
    if !url.starts_with("http://127.0.0.1:") {
        bail!("benchmarks only target loopback, not {url}");
    }
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
}
