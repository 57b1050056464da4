#!/usr/bin/env bash
# RS256 verification speed inside V8 (issue 18, "RSA in the VM"): builds
# filters/jwt-auth/examples/rsa_vm_bench.rs for wasm32-wasip1 and runs it under node's WASI with a
# 2048-bit key and signature made by openssl now (nothing is committed).
#   scripts/rsa-vm-bench.sh [iterations]
# Built with wasm SIMD as scripts/build-wasm.sh builds the filters; WASM_FEATURES= (empty)
# builds without it, for the scalar path's figure.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "rsa-vm-bench: node not found (apt-get install nodejs)" >&2; exit 1; }
export CARGO_TARGET_DIR="${WASM_TARGET_DIR:-$PWD/target/wasm}"
WASM_LD=$(ls /usr/lib/llvm-*/bin/wasm-ld 2>/dev/null | sort -V | tail -n1)
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  RUSTFLAGS="${WASM_FEATURES--C target-feature=+simd128}" cargo build -q --profile wasm --target wasm32-wasip1 -p jwt-auth --example rsa_vm_bench
else
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=$WASM_LD -L /usr/lib/wasm32-wasi ${WASM_FEATURES--C target-feature=+simd128}" \
    /usr/bin/cargo build -q --profile wasm --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
      -p jwt-auth --example rsa_vm_bench
fi
module="$CARGO_TARGET_DIR/wasm32-wasip1/wasm/examples/rsa_vm_bench.wasm"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/key.pem" 2>/dev/null
msg='eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ'
sig=$(printf '%s' "$msg" | openssl dgst -sha256 -sign "$dir/key.pem" | od -An -v -tx1 | tr -d ' \n')
n=$(openssl rsa -in "$dir/key.pem" -noout -modulus 2>/dev/null | cut -d= -f2)
node --no-warnings -e '
const { WASI } = require("wasi");
const fs = require("fs");
const [module, ...args] = process.argv.slice(1);
const wasi = new WASI({ version: "preview1", args: ["rsa_vm_bench", ...args] });
const m = new WebAssembly.Module(fs.readFileSync(module));
// The library links the proxy-wasm host calls; the benchmark makes none of them.
const env = {};
for (const i of WebAssembly.Module.imports(m)) {
  if (i.module === "env") env[i.name] = () => { throw new Error("host call " + i.name); };
}
const inst = new WebAssembly.Instance(m, { ...wasi.getImportObject(), env });
// proxy-wasm also exports _initialize, which node refuses next to _start: run _start alone.
const { memory, _start } = inst.exports;
process.exitCode = wasi.start({ exports: { memory, _start } });
' "$module" "$n" "$sig" "$msg" "${1:-2000}"
