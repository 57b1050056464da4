#!/usr/bin/env bash
# Runs a crate's example inside V8 (node's WASI), built for wasm32-wasip1 as scripts/build-wasm.sh
# builds the filters (the wasm profile, WASM_FEATURES). The proxy-wasm host calls the library
# links are stubbed: an example that makes one fails.
#   scripts/vm-example.sh PACKAGE EXAMPLE [ARGS...]
# VM_PROFILE=FILE records the run with perf, V8 naming the module's functions
# (--perf-basic-prof), and writes `perf report`'s top symbols to FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/vm-example.sh PACKAGE EXAMPLE [ARGS...]" >&2; exit 2; }
package=$1 example=$2
shift 2
command -v node >/dev/null || { echo "vm-example: node not found (apt-get install nodejs)" >&2; exit 1; }
export CARGO_TARGET_DIR="${WASM_TARGET_DIR:-$PWD/target/wasm}"
features="${WASM_FEATURES--C target-feature=+simd128}"
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  RUSTFLAGS="$features" cargo build -q --profile wasm --target wasm32-wasip1 -p "$package" --example "$example"
else
  WASM_LD=$(ls /usr/lib/llvm-*/bin/wasm-ld 2>/dev/null | sort -V | tail -n1)
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=$WASM_LD -L /usr/lib/wasm32-wasi $features" \
    /usr/bin/cargo build -q --profile wasm --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
      -p "$package" --example "$example"
fi
module=$(realpath "$CARGO_TARGET_DIR/wasm32-wasip1/wasm/examples/$example.wasm")
runner='
const { WASI } = require("wasi");
const fs = require("fs");
const [module, name, ...args] = process.argv.slice(1);
const wasi = new WASI({ version: "preview1", args: [name, ...args] });
const m = new WebAssembly.Module(fs.readFileSync(module));
const env = {};
for (const i of WebAssembly.Module.imports(m)) {
  if (i.module === "env") env[i.name] = () => { throw new Error("host call " + i.name); };
}
const inst = new WebAssembly.Instance(m, { ...wasi.getImportObject(), env });
// proxy-wasm also exports _initialize, which node refuses next to _start: run _start alone.
const { memory, _start } = inst.exports;
process.exitCode = wasi.start({ exports: { memory, _start } });
'
if [ -n "${VM_PROFILE:-}" ]; then
  command -v perf >/dev/null || { echo "vm-example: perf not found (apt-get install linux-perf)" >&2; exit 1; }
  # node writes V8's logs to its working directory: run it in a scratch one.
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch" /tmp/perf-*.map' EXIT
  (cd "$scratch" && perf record -q -e cpu-clock -F 4999 -o "$scratch/perf.data" -- \
    node --no-warnings --perf-basic-prof -e "$runner" "$module" "$example" "$@")
  perf report -i "$scratch/perf.data" -q --no-children --sort symbol 2>/dev/null | head -60 \
    > "$VM_PROFILE"
else
  node --no-warnings -e "$runner" "$module" "$example" "$@"
fi
