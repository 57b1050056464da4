#!/usr/bin/env bash
# `make fuzz`: runs each cargo-fuzz target of filters/jwt-auth/fuzz for FUZZ_SECONDS (default
# 60) and fails if any finds a crash. Installs cargo-fuzz from crates.io when missing.
# libFuzzer's coverage instrumentation works on the stable toolchain; the one nightly-only
# flag cargo-fuzz passes is allowed with RUSTC_BOOTSTRAP. No sanitizer: the code under test is
# safe Rust, so the fuzzer looks for panics, overflows and runaway allocations.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-token jwks_verify config}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked -j"${CARGO_BUILD_JOBS:-2}"
fi

cd filters/jwt-auth/fuzz
mkdir -p corpus/token corpus/jwks_verify corpus/config
# Seeds (generated, not committed): shapes each parser accepts, so the fuzzer starts deep.
printf '%s' 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJ1In0.c2ln' > corpus/token/seed-jws
printf '%s\0%s' '{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}' \
  'eyJhbGciOiJFZERTQSIsImtpZCI6ImsifQ.eyJzdWIiOiJ1In0.c2ln' > corpus/jwks_verify/seed-ed
printf '%s\0%s' '{"keys":[{"kty":"RSA","kid":"r","n":"sXch","e":"AQAB"}]}' \
  'eyJhbGciOiJSUzI1NiIsImtpZCI6InIifQ.eyJzdWIiOiJ1In0.c2ln' > corpus/jwks_verify/seed-rsa
printf '%s' '{"providers":{"p":{"issuer":"i","remote_jwks":{"cluster":"c","uri":"https://i/j"}}},"rules":[{"match":{"path_prefix":"/"},"requires":{"provider_name":"p"}}]}' \
  > corpus/config/seed

for t in $TARGETS; do
  echo "fuzz: $t for ${SECONDS_EACH}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none -j1 "$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=16384
done
echo "fuzz: no crashes in ${SECONDS_EACH}s per target ($TARGETS)"
