#!/usr/bin/env bash
# Baseline for `rls-load`: the raw rate limit script driven by redis-benchmark at the same
# concurrency and key spread, against a Redis on 127.0.0.1. Prints one JSON line.
#
#   bench/lua-baseline.sh PORT CONCURRENCY KEYS DESCRIPTORS(1|3) [REQUESTS]
set -euo pipefail
port=$1 concurrency=$2 keys=$3 descriptors=$4 requests=${5:-200000}
here=$(cd "$(dirname "$0")" && pwd)
sha=$(redis-cli -h 127.0.0.1 -p "$port" SCRIPT LOAD "$(cat "$here/../src/storage/redis/rate_limit.lua")")
# Same keys and arguments as the service sends for bench/config.yaml, one decision per call
# (the script takes a batch: the decision count, each decision's key count, then the keys'
# arguments), i.e. what the service would send without coalescing.
args=(EVALSHA "$sha" "$descriptors" "rl:{bench}:t1:k1=v__rand_int__")
[ "$descriptors" = 3 ] && args+=("rl:{bench}:f60:k2=v__rand_int__" "rl:{bench}:s3600:k3=v__rand_int__")
args+=(1 "$descriptors" t 1000000 1000000 1000000 1 1)
[ "$descriptors" = 3 ] && args+=(f 100000000 60000000 100000000 1 1 s 1000000000 3600000000 1000000000 1 1)
rps=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$concurrency" -n "$requests" -r "$keys" --csv "${args[@]}" \
  | tail -n 1 | cut -d, -f2 | tr -d '"')
printf '{"lua_calls_per_sec":%s,"concurrency":%s,"descriptors":%s,"keys":%s}\n' "$rps" "$concurrency" "$descriptors" "$keys"
