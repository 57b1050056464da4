#!/usr/bin/env bash
# The lint gate: rustfmt, clippy -D warnings on the host, and clippy on the wasm32 glue (the
# proxy-wasm modules only compile for wasm32, so host clippy never sees them).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${CARGO_BUILD_JOBS:-2}"

cargo fmt --all --check
cargo clippy -j"$JOBS" --workspace --all-targets -- -D warnings

filters=()
for f in transform passthrough jwt-auth tenant-cache-key ratelimit bundle aggregate; do
  [ -f "filters/$f/Cargo.toml" ] && filters+=(-p "$f")
done
export CARGO_TARGET_DIR="${WASM_TARGET_DIR:-$PWD/target/wasm}"
# The features scripts/build-wasm.sh builds with, so the SIMD code is linted and the target
# directory's build is shared.
WASM_FEATURES="${WASM_FEATURES--C target-feature=+simd128}"
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  RUSTFLAGS="$WASM_FEATURES" cargo clippy -j"$JOBS" --profile wasm --target wasm32-wasip1 "${filters[@]}" -- -D warnings
elif [ -x /usr/bin/cargo-clippy ]; then
  WASM_LD=$(ls /usr/lib/llvm-*/bin/wasm-ld 2>/dev/null | sort -V | tail -n1)
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-C linker=$WASM_LD -L /usr/lib/wasm32-wasi $WASM_FEATURES" \
  PATH="/usr/bin:$PATH" \
    /usr/bin/cargo clippy -j"$JOBS" --profile wasm --target wasm32-wasip1 \
      -Zbuild-std=std,panic_abort "${filters[@]}" -- -D warnings
else
  echo "lint: no wasm32 clippy; run scripts/bootstrap.sh" >&2
  exit 1
fi
echo "lint: clean (native and wasm32)"
