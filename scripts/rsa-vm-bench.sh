#!/usr/bin/env bash
# RS256 verification speed inside V8 (issue 18, "RSA in the VM"): runs
# filters/jwt-auth/examples/rsa_vm_bench.rs under node's WASI (scripts/vm-example.sh) with a
# 2048-bit key and signature made by openssl now (nothing is committed).
#   scripts/rsa-vm-bench.sh [iterations]
# Built with wasm SIMD as scripts/build-wasm.sh builds the filters; WASM_FEATURES= (empty)
# builds without it, for the scalar path's figure (with WASM_TARGET_DIR elsewhere, so the
# filters' build is not redone).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/key.pem" 2>/dev/null
msg='eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ'
sig=$(printf '%s' "$msg" | openssl dgst -sha256 -sign "$dir/key.pem" | od -An -v -tx1 | tr -d ' \n')
n=$(openssl rsa -in "$dir/key.pem" -noout -modulus 2>/dev/null | cut -d= -f2)
exec scripts/vm-example.sh jwt-auth rsa_vm_bench "$n" "$sig" "$msg" "${1:-2000}"
