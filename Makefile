# One entry point per job. `make test` and `make demo` bootstrap and build by themselves.
SHELL := /bin/bash
CARGO ?= cargo
JOBS ?= 2
export CARGO_BUILD_JOBS := $(JOBS)

.PHONY: all bootstrap build wasm native test unit integration demo bench fuzz lint fmt clean check-config

all: build

bootstrap:
	@scripts/bootstrap.sh

# dist/<filter>.wasm for each filter crate, dist/ratelimit-service.
build: bootstrap wasm native

wasm:
	@scripts/build-wasm.sh

native:
	$(CARGO) build --release -j$(JOBS) -p ratelimit-service --bins
	@mkdir -p dist && cp target/release/ratelimit-service dist/
	@echo "build: dist/ratelimit-service"

# Every test: the route-policy check of the shipped gateway config, unit tests of all crates,
# then the integration suite against real Envoy/Redis.
test: build check-config
	$(CARGO) test -j$(JOBS) --workspace --no-fail-fast

# Every route of an Envoy config names its edgegate policies, and every policy is used
# (docs/gateway.md, "Policy by route"). CONFIG: the files to check.
CONFIG ?= envoy/gateway.yaml
check-config: bootstrap
	$(CARGO) run -q -j$(JOBS) -p gateway-tests --bin check-config -- $(CONFIG)

lint: bootstrap
	@scripts/lint.sh

fmt:
	$(CARGO) fmt --all

# The gateway and everything behind it as local processes (docs/demo.md).
demo: build
	$(CARGO) build --release -j$(JOBS) -p gateway-tests --bin gateway-demo --bin demo-service --bin demo-idp
	$(CARGO) run --release -j$(JOBS) -p gateway-tests --bin gateway-demo

bench: build
	$(CARGO) run --release -j$(JOBS) -p gateway-tests --bin gateway-bench

# Each jwt-auth fuzz target for FUZZ_SECONDS (default 60); installs cargo-fuzz if missing.
fuzz: bootstrap
	@scripts/fuzz.sh

clean:
	rm -rf target dist
