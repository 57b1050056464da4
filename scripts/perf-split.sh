#!/usr/bin/env bash
# Where the Envoy worker's time per request goes, row by row, from a benchmark run made with
# BENCH_PERF_DIR (gateway-bench records each saturation row with perf):
#   BENCH_PERF_DIR=/tmp/p target/release/gateway-bench chain 2> /tmp/p/bench.log
#   scripts/perf-split.sh /tmp/p /tmp/p/bench.log
# Prints, per row: worker time per request (1/req/s: the worker is saturated) split into
# Envoy's own code, V8's generated code (the modules), the kernel, and libc/vdso, in us.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: scripts/perf-split.sh PERF_DIR BENCH_STDERR" >&2; exit 2; }
dir=$1 log=$2
echo "| row | us per request | Envoy | wasm (V8 JIT) | kernel | libc |"
echo "|---|---:|---:|---:|---:|---:|"
grep -E '^ *[a-z0-9-]+ .* [0-9]+ req/s$' "$log" | while read -r row rest; do
  rps=$(grep -o '[0-9]* req/s$' <<<"$rest" | cut -d' ' -f1)
  [ -f "$dir/$row.data" ] || continue
  perf report -i "$dir/$row.data" --sort comm,dso -q 2>/dev/null |
    awk -v row="$row" -v rps="$rps" '
      $2 == "wrk:worker_0" {
        p = $1; sub("%", "", p); d = $3
        if (d == "[JIT]") d = "jit"; else if (d == "[kernel.kallsyms]") d = "kernel";
        else if (d == "envoy") d = "envoy"; else d = "libc"
        a[d] += p; t += p
      }
      END {
        if (t == 0) exit
        us = 1e6 / rps
        printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", row, us, us*a["envoy"]/t, us*a["jit"]/t, us*a["kernel"]/t, us*a["libc"]/t
      }'
done
