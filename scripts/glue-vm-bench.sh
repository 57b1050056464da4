#!/usr/bin/env bash
# The bundle's own per-request work natively and inside V8 (filters/bundle/examples/glue_bench.rs
# over filter-core's FakeHost): what the module costs without Envoy's host calls.
#   scripts/glue-vm-bench.sh [iterations]
# VM_PROFILE=FILE also writes the V8 run's top functions (perf, --perf-basic-prof) to FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200000}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build -q --release -p bundle --example glue_bench
target/release/examples/glue_bench emit > "$dir/input"
mapfile -t input < "$dir/input"
printf 'native: '
target/release/examples/glue_bench run "${input[@]}" -n "$n"
printf 'V8:     '
scripts/vm-example.sh bundle glue_bench run "${input[@]}" -n "$n"
