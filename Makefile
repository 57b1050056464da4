# One entry point per job. `make test` and `make demo` bootstrap and build by themselves.
SHELL := /bin/bash
CARGO ?= cargo
JOBS ?= 2
export CARGO_BUILD_JOBS := $(JOBS)

.PHONY: all bootstrap build wasm native descriptors test unit integration demo bench fuzz lint fmt clean check-config oci registry-set images demo-bins

all: build

bootstrap:
	@scripts/bootstrap.sh

# dist/<filter>.wasm for each filter crate, dist/ratelimit-service, dist/inventory.pb.
build: bootstrap wasm native descriptors

wasm:
	@scripts/build-wasm.sh

native:
	$(CARGO) build --release -j$(JOBS) -p ratelimit-service --bins
	@mkdir -p dist && cp target/release/ratelimit-service dist/
	@echo "build: dist/ratelimit-service"

# Every test: the route-policy check of the shipped gateway config, unit tests of all crates,
# then the integration suite against real Envoy/Redis, a private OCI registry and the compose
# file's containers (on the images `make images` builds).
test: build check-config images
	$(CARGO) test -j$(JOBS) --workspace --no-fail-fast

# Every route of an Envoy config names its edgegate policies, and every policy is used
# (docs/gateway.md, "Policy by route"). CONFIG: the files to check.
CONFIG ?= envoy/gateway.yaml
check-config: bootstrap
	$(CARGO) run -q -j$(JOBS) -p gateway-tests --bin check-config -- $(CONFIG)

# OCI images of dist/*.wasm for Istio's WasmPlugin (docs/deployment.md, "OCI images"): built with
# podman, pushed as $(REGISTRY)/<module>:<version>, pulled back by digest and checked byte for
# byte; the urls of $(ISTIO_DIR)/wasm-*.yaml are then pinned to oci://<tag>@<digest>.
#   make oci REGISTRY=registry.example.com/edgegate [TLS_VERIFY=false] [ISTIO_DIR=envoy/istio]
REGISTRY ?=
TLS_VERIFY ?=
ISTIO_DIR ?= envoy/istio
export CONTAINERS_CONF ?= $(CURDIR)/envoy/docker/containers.conf
oci: registry-set build
	$(CARGO) run -q -j$(JOBS) -p gateway-tests --bin oci-publish -- --registry "$(REGISTRY)" \
	  --istio-dir "$(ISTIO_DIR)" $(if $(TLS_VERIFY),--tls-verify $(TLS_VERIFY))

registry-set:
	@if [ -z "$(REGISTRY)" ]; then echo "oci: set REGISTRY=host[:port][/path], e.g. make oci REGISTRY=registry.example.com/edgegate" >&2; exit 2; fi

# The descriptor set of the demo inventory service, for Envoy's grpc_json_transcoder
# (docs/transcoding.md): every file it imports included; google/protobuf/*.proto come from
# Debian's libprotobuf-dev, next to protoc.
descriptors:
	@mkdir -p dist
	protoc -I proto --include_imports --descriptor_set_out=dist/inventory.pb \
	  edgegate/inventory/v1/inventory.proto google/rpc/status.proto
	@echo "build: dist/inventory.pb"

lint: bootstrap
	@scripts/lint.sh

fmt:
	$(CARGO) fmt --all

# The gateway and everything behind it as local processes (docs/demo.md).
demo: build demo-bins
	$(CARGO) run --release -j$(JOBS) -p gateway-tests --bin gateway-demo

demo-bins:
	$(CARGO) build --release -j$(JOBS) -p gateway-tests --bin gateway-demo --bin demo-service --bin demo-idp

# The images envoy/docker-compose.yaml runs, FROM scratch from this repository's artifacts
# (scripts/images.sh; docs/deployment.md, "docker-compose"). CONTAINER_ENGINE=docker for Docker.
images: build demo-bins
	@scripts/images.sh

bench: build
	$(CARGO) run --release -j$(JOBS) -p gateway-tests --bin gateway-bench

# Each jwt-auth fuzz target for FUZZ_SECONDS (default 60); installs cargo-fuzz if missing.
fuzz: bootstrap
	@scripts/fuzz.sh

clean:
	rm -rf target dist
