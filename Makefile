# Every workflow of RustyGate has a target here. `make help` lists them.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/rustygate-target
CARGO ?= cargo
PYTHON ?= python3

.PHONY: help build release test unit lint fmt clippy lab down check-config bench bench-smoke soak stream clean-lab

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## debug build of the gateway and the mock backend
	$(CARGO) build --locked --workspace --bins

release: ## optimised build; prints the binary sizes
	$(CARGO) build --locked --release --workspace --bins
	@ls -l $(CARGO_TARGET_DIR)/release/rustygate $(CARGO_TARGET_DIR)/release/mock-backend | awk '{printf "%s: %.1f MiB\n", $$9, $$5/1048576}'

test: lint check-config bench-smoke unit ## everything CI runs: lint, config check, benchmark smoke, all tests (last)

unit: ## all tests of the workspace (doc tests, then unit, integration and process tests)
	$(CARGO) test --locked --workspace --doc
	@if cargo nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --locked --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --locked --workspace --no-fail-fast; \
	fi

lint: fmt clippy ## formatting and clippy, warnings denied

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --locked --workspace --all-targets --all-features -- -D warnings

check-config: build ## validate the shipped configurations
	$(CARGO_TARGET_DIR)/debug/rustygate check --config config/default.yaml
	$(CARGO_TARGET_DIR)/debug/rustygate check --config compose/rustygate.lab.yaml

lab: build ## native lab: gateway + 3 mock backends on loopback (Ctrl-C or `make down` stops it)
	./scripts/lab.sh

down: ## stop the native lab
	./scripts/lab-down.sh

bench: release ## wrk benchmark: gateway vs NGINX vs direct, 5 interleaved rounds (not part of `make test`)
	$(PYTHON) loadtest/bench.py --extra-gateway gateway-reqwest=loadtest/configs/gateway-reqwest.yaml $(BENCH_ARGS)

bench-smoke: build ## a few seconds of the benchmark harness, no thresholds (keeps it working)
	$(PYTHON) loadtest/bench.py --smoke --profile debug --extra-gateway gateway-reqwest=loadtest/configs/gateway-reqwest.yaml

soak: release ## leak check: RSS across 1,000,000 requests with connection churn
	$(PYTHON) loadtest/soak.py

stream: release ## 1 GiB up and down through the gateway: intact, bounded memory
	$(PYTHON) loadtest/stream.py
