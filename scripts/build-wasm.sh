#!/usr/bin/env bash
# Builds every proxy-wasm filter crate for wasm32-wasip1 and copies it to dist/<crate>.wasm.
#
# Uses rustup's wasm32-wasip1 target when it is installed (a normal developer machine).
# Otherwise uses Debian's rustc-web with its standard-library source, building std for the
# target with -Zbuild-std (rustup cannot download targets on the project's build machines).
# Usage: scripts/build-wasm.sh [crate ...]   (default: all filter crates)
#
# Bundles (filters/bundle, and filters/aggregate, which links transform) link other filter
# crates with their `plugin` feature off, and cargo unifies features across one run: they are
# built in a run of their own, after the single filters' modules are copied out (that run
# re-links the filter crates' own cdylibs without their entry points, into the same target
# directory).
set -euo pipefail
cd "$(dirname "$0")/.."

FILTERS=(transform passthrough jwt-auth tenant-cache-key ratelimit bundle aggregate)
BUNDLES=(bundle aggregate)
if [ $# -gt 0 ]; then FILTERS=("$@"); fi
singles=()
bundles=()
for f in "${FILTERS[@]}"; do
  [ -f "filters/$f/Cargo.toml" ] || continue
  if [[ " ${BUNDLES[*]} " == *" $f "* ]]; then bundles+=("$f"); else singles+=("$f"); fi
done

export CARGO_TARGET_DIR="${WASM_TARGET_DIR:-$PWD/target/wasm}"
# wasm SIMD (fixed-width, 128-bit): RSA's dot products multiply two limb pairs per instruction
# (filters/jwt-auth/src/verify/monty.rs). V8 (Envoy, Istio) and Wasmtime run it; a runtime
# without SIMD refuses the module at load. WASM_FEATURES= builds without (RSA is then ~3x slower).
WASM_FEATURES="${WASM_FEATURES--C target-feature=+simd128}"
JOBS="${CARGO_BUILD_JOBS:-2}"

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  build() { RUSTFLAGS="$WASM_FEATURES" cargo build -j"$JOBS" --profile wasm --target wasm32-wasip1 "$@"; }
elif [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ]; then
  WASM_LD=$(ls /usr/lib/llvm-*/bin/wasm-ld 2>/dev/null | sort -V | tail -n1)
  [ -n "$WASM_LD" ] || { echo "build-wasm: wasm-ld not found; run scripts/bootstrap.sh" >&2; exit 1; }
  build() {
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-C linker=$WASM_LD -L /usr/lib/wasm32-wasi $WASM_FEATURES" \
      /usr/bin/cargo build -j"$JOBS" --profile wasm --target wasm32-wasip1 \
        -Zbuild-std=std,panic_abort "$@"
  }
else
  echo "build-wasm: no wasm32-wasip1 toolchain; run scripts/bootstrap.sh" >&2
  exit 1
fi

# Builds the crates in one cargo run and copies their modules to dist/.
build_and_copy() {
  [ $# -gt 0 ] || return 0
  local pkgs=() f name
  for f in "$@"; do pkgs+=(-p "$f"); done
  build "${pkgs[@]}"
  mkdir -p dist
  for f in "$@"; do
    name=${f//-/_}
    cp "$CARGO_TARGET_DIR/wasm32-wasip1/wasm/$name.wasm" "dist/$name.wasm"
    printf 'build-wasm: dist/%s.wasm (%s bytes)\n' "$name" "$(stat -c %s "dist/$name.wasm")"
  done
}

build_and_copy "${singles[@]}"
for b in "${bundles[@]}"; do build_and_copy "$b"; done
