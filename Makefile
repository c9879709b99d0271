# Every workflow of RustyGate has a target here. `make help` lists them.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/rustygate-target
CARGO ?= cargo
# WASM plugins are built in everywhere (the lab, tests, benchmarks, releases); `make build FEATURES=`
# builds without them. One feature set for everything keeps one set of artifacts (DEPS.md §7).
FEATURES ?= --features rustygate/wasm
# The example plugins build for wasm32 in a target dir of their own.
export PLUGIN_TARGET_DIR ?= $(HOME)/.cache/rustygate-plugin-target
PYTHON ?= python3
MUSL := x86_64-unknown-linux-musl
COMPOSE ?= docker compose -f compose/docker-compose.yml
# True when a Docker engine answers (not just a client being installed).
DOCKER_ENGINE = docker info >/dev/null 2>&1

.PHONY: help lab-certs plugins unit-nowasm unit-hyper-frontend build build-release release release-musl-malloc image test unit lint fmt clippy module-cycles check-tools check-config check-compose \
        check-prometheus check-dashboards check-static check-k6 check-cors-browser check-tls-browser check-ws-browser check-differential demo-native lab up down ps logs demo \
        loadtest bench bench-smoke instructions soak keychurn stream fuzz idle-conns

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# --- build ---------------------------------------------------------------------------------

build: ## debug build of the gateway (with WASM plugin support) and the mock backend
	$(CARGO) build --locked --workspace --bins $(FEATURES)

build-release: ## optimised glibc build (what `make bench` measures)
	$(CARGO) build --locked --release --workspace --bins $(FEATURES)

plugins: ## the example WASM plugins (plugin-kit/) built into plugins/*.wasm
	./scripts/build-plugins.sh

release: ## static musl binaries, stripped, as shipped in the image; prints their size
	$(CARGO) build --locked --release --target $(MUSL) -p rustygate -p mock-backends $(FEATURES)
	@for b in rustygate mock-backend; do f=$(CARGO_TARGET_DIR)/$(MUSL)/release/$$b; \
	  printf '%s: %.1f MiB, %s\n' "$$f" "$$(stat -c %s $$f | awk '{print $$1/1048576}')" "$$(ldd $$f 2>&1 | head -1 | xargs)"; done

release-musl-malloc: ## the static musl build with musl's own malloc, kept for `make bench`'s allocator comparison
	$(CARGO) build --locked --release --target $(MUSL) -p rustygate --no-default-features
	cp $(CARGO_TARGET_DIR)/$(MUSL)/release/rustygate $(CARGO_TARGET_DIR)/$(MUSL)/release/rustygate-musl-malloc

image: ## build the container image (needs a Docker engine)
	docker build -t rustygate:dev .

# --- the lab -------------------------------------------------------------------------------

lab: build plugins ## native lab in the foreground: gateway + 3 mock backends (+ Prometheus); Ctrl-C stops it
	./scripts/lab.sh run

up: ## the lab: the compose stack, or the native lab (detached) where no Docker engine answers
	@./scripts/lab_certs.sh
	@if $(DOCKER_ENGINE); then $(MAKE) --no-print-directory plugins && $(COMPOSE) up -d --build; else \
	  echo "make up: no Docker engine answers here; starting the native lab instead (same ports)"; \
	  $(MAKE) --no-print-directory build plugins && ./scripts/lab.sh start; fi

down: ## stop the lab (compose stack and/or native lab)
	@if $(DOCKER_ENGINE); then $(COMPOSE) down; fi
	@./scripts/lab.sh stop

ps: ## what the lab runs
	@if $(DOCKER_ENGINE); then $(COMPOSE) ps; fi
	@./scripts/lab.sh status

logs: ## follow the lab's logs
	@if $(DOCKER_ENGINE) && [ -n "$$($(COMPOSE) ps -q)" ]; then $(COMPOSE) logs -f; else ./scripts/lab.sh logs; fi

demo: ## every demo scenario against the running lab: PASS/FAIL/SKIP with evidence
	@LAB_MODE=$$( $(DOCKER_ENGINE) && [ -n "$$($(COMPOSE) ps -q 2>/dev/null)" ] && echo compose || echo native ) \
	  $(PYTHON) scripts/demo.py

loadtest: ## load against the running lab: k6 in compose, wrk natively
	@if $(DOCKER_ENGINE) && [ -n "$$($(COMPOSE) ps -q)" ]; then $(COMPOSE) --profile loadtest run --rm k6; \
	else wrk -t2 -c32 -d20s --latency -s loadtest/wrk/loadtest.lua http://127.0.0.1:8080; fi

# --- checks (all run by `make test`) -------------------------------------------------------

test: lint check-tools plugins check-deps check-config check-compose check-prometheus check-k6 check-static check-dashboards check-cors-browser check-tls-browser check-ws-browser check-differential demo-native bench-smoke unit-nowasm unit-hyper-frontend unit ## everything CI runs; the test runner's summary is last

unit: plugins ## all tests of the workspace (doc tests, then unit, integration and process tests)
	$(CARGO) test --locked --workspace --doc $(FEATURES)
	@if cargo nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --locked --workspace --no-fail-fast $(FEATURES); \
	else \
	  $(CARGO) test --locked --workspace --no-fail-fast $(FEATURES); \
	fi

# The experimental hyper front end (server.frontend: hyper) under the core suites. Excluded: what
# it does not do yet (docs/architecture.md, "Front ends": 408 on a slow head) and the reload tests whose configuration
# (made by hand, or re-read from a file) does not carry the test's server.frontend override.
HYPER_FRONTEND_GAPS := a_slow_client_head_gets_408|a_removed_upstreams_health_probes|certificates_are_swapped_under_load|a_replaced_upstream_ca_bundle
unit-hyper-frontend: ## the core integration suites again, served by the experimental hyper front end
	RUSTYGATE_TEST_FRONTEND=hyper $(CARGO) nextest run --locked -p rustygate $(FEATURES) --no-fail-fast \
	  --test forwarding --test errors_and_admin --test upstreams --test auth --test rate_limit --test cors \
	  --test h2c --test grpc --test hostile --test reload --test resilience --test tls --test acme \
	  --test upstream_tls --test upstream_h2 --test websocket \
	  -E 'not test(/$(HYPER_FRONTEND_GAPS)/)'

unit-nowasm: ## a build without the `wasm` feature refuses configurations naming plugins
	$(CARGO) test --locked -p rustygate --lib config::

lint: fmt clippy module-cycles ## formatting and clippy, warnings denied; no import cycle among the gateway's modules

check-tools: ## the Python tooling's own tests (scripts/labkit: process supervision, deadlines, ports)
	$(PYTHON) -m unittest discover -s scripts/labkit -t scripts

module-cycles: ## fails on an import cycle among gateway/src's modules (the checker checks itself first)
	$(PYTHON) scripts/check_module_cycles.py --self-test >/dev/null
	$(PYTHON) scripts/check_module_cycles.py gateway/src

fmt:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path plugin-kit/Cargo.toml --all -- --check

clippy:
	$(CARGO) clippy --locked --workspace --all-targets --all-features -- -D warnings
	@# The build without `wasm` has cfg'd-out code paths of its own.
	$(CARGO) clippy --locked -p rustygate --all-targets -- -D warnings
	@if rustup target list --installed | grep -q wasm32-unknown-unknown; then \
	  CARGO_TARGET_DIR=$(PLUGIN_TARGET_DIR) $(CARGO) clippy --locked --manifest-path plugin-kit/Cargo.toml \
	    --target wasm32-unknown-unknown --all-targets -- -D warnings; \
	else echo "clippy: no wasm32-unknown-unknown target: plugin-kit not linted (make plugins says why)"; fi

check-deps: ## one version of each OpenTelemetry crate (DEPS.md P3: mixed versions silently break propagation)
	@tree=$$($(CARGO) tree --locked --workspace -d --depth 0 --prefix none) || exit 1; \
	dups=$$(echo "$$tree" | grep -E '^(opentelemetry[a-z_-]*|tracing-opentelemetry|tonic[a-z_-]*|prost[a-z_-]*) v' | sort -u); \
	if [ -n "$$dups" ]; then echo "duplicated OpenTelemetry crates:"; echo "$$dups"; exit 1; fi; \
	echo "check-deps: one version of each OpenTelemetry crate"

lab-certs: ## the lab's CA and gateway certificate in compose/certs/ (git-ignored), made when missing or near expiry
	./scripts/lab_certs.sh

check-config: build lab-certs ## validate the shipped gateway configurations
	$(CARGO_TARGET_DIR)/debug/rustygate check --config config/default.yaml
	$(CARGO_TARGET_DIR)/debug/rustygate check --config compose/rustygate.lab.yaml

check-compose: ## the compose file is valid (Debian's docker-compose; no engine needed)
	docker-compose -f compose/docker-compose.yml config -q

check-prometheus: ## Prometheus configs and alert rules are valid, and every alert fires in its unit test
	promtool check config compose/prometheus/prometheus.yml
	promtool check config compose/prometheus/prometheus.native.yml
	promtool check rules compose/prometheus/alerts.yml
	promtool test rules compose/prometheus/alerts.test.yml

check-dashboards: build plugins ## every dashboard query returns data from a real Prometheus scraping a real gateway
	$(PYTHON) scripts/check_dashboards.py

check-static: ## a static musl build serves from an empty chroot (what the scratch image relies on)
	@rustup target list --installed | grep -q $(MUSL) || rustup target add $(MUSL)
	$(CARGO) build --locked --target $(MUSL) -p rustygate
	./scripts/check_static.sh

check-cors-browser: build ## CORS in headless Chromium: the allowed origin's fetch works, another origin's is blocked
	$(PYTHON) scripts/check_cors_browser.py

check-tls-browser: build ## HTTPS in headless Chromium: a pinned test key loads over h2 (access line protocol h2, TLS version, SNI), another pin is refused
	$(PYTHON) scripts/check_tls_browser.py

check-ws-browser: build ## WebSocket in headless Chromium: an echo session through the gateway closes normally, an oversized frame gets 1009; both sessions in the access log
	$(PYTHON) scripts/check_ws_browser.py

check-differential: build ## 392 hostile requests through NGINX and the gateway to a recording backend: nothing NGINX refuses is forwarded, nothing smuggled, every case answered (docs/security.md)
	$(PYTHON) scripts/differential/run.py --gateway $(CARGO_TARGET_DIR)/debug/rustygate

check-k6: ## the k6 scripts parse
	@for f in loadtest/k6/*.js; do node --check --input-type=module < $$f || exit 1; echo "node --check $$f: ok"; done

demo-native: build plugins ## the demo against a fresh native lab, then stop it
	./scripts/lab.sh start
	@LAB_MODE=native $(PYTHON) scripts/demo.py; rc=$$?; ./scripts/lab.sh stop; exit $$rc

# --- benchmarks (never part of `make test` beyond the smoke run) ----------------------------

# Order matters: the mimalloc musl build (`release`) must come after the musl-malloc one.
# The policies target (JWT + rate limit + CORS on its route) gets a valid token and an allowed Origin.
# The plugin target runs the add-header WASM plugin on its route (budget: efficiency >= 0.8). It
# runs before the tracing targets: right after the live-collector one, whose exporter and sink are
# still busy, it measured ~6% worse (docs/benchmarks.md).
# The tracing targets trace every request: to a closed port (the collector is down: budget, CPU
# efficiency >= 0.91, i.e. within 10% of `gateway`) and to a live OTLP receiver (the otlp-sink).
POLICY_SECRET := rustygate-bench-secret-0123456789abcdef
plugin-args = --extra-gateway gateway-plugin=loadtest/configs/gateway-plugin.yaml
tracing-args = --extra-gateway gateway-tracing-dead=loadtest/configs/gateway-tracing-dead.yaml \
	  --extra-gateway gateway-tracing-live=loadtest/configs/gateway-tracing-live.yaml
policy-args = --extra-gateway gateway-policies=loadtest/configs/gateway-policies.yaml \
	  --header "gateway-policies=Authorization: Bearer $$($(1) token --secret $(POLICY_SECRET) --sub bench \
	    --iss rustygate-bench --aud bench --ttl 24h)" --header "gateway-policies=Origin: https://app.example.com"

bench: build-release release-musl-malloc release plugins ## wrk (h2load, a WebSocket client): the gateway's builds, clients, policies and tracing vs NGINX vs direct, plain, over TLS, h2c and WebSocket, 5 interleaved rounds
	$(PYTHON) loadtest/bench.py --scenarios small,16k,tls-small,tls-new,tls-backend,h2,ws-echo \
	  --extra-gateway gateway-awc=loadtest/configs/gateway-awc.yaml \
	  --extra-gateway gateway-reqwest=loadtest/configs/gateway-reqwest.yaml \
	  --extra-gateway gateway-hyperfe=loadtest/configs/gateway-hyper-frontend.yaml \
	  $(call policy-args,$(CARGO_TARGET_DIR)/release/rustygate) $(plugin-args) $(tracing-args) \
	  --extra-gateway gateway-musl=loadtest/configs/gateway.yaml,$(CARGO_TARGET_DIR)/$(MUSL)/release/rustygate \
	  --extra-gateway gateway-musl-malloc=loadtest/configs/gateway.yaml,$(CARGO_TARGET_DIR)/$(MUSL)/release/rustygate-musl-malloc \
	  $(BENCH_ARGS)

bench-smoke: build plugins ## a few seconds of the benchmark harness, no thresholds (keeps it working)
	$(PYTHON) loadtest/bench.py --smoke --profile debug --scenarios small,16k,tls-small,tls-backend,h2,ws-echo \
	  --extra-gateway gateway-reqwest=loadtest/configs/gateway-reqwest.yaml \
	  --extra-gateway gateway-awc=loadtest/configs/gateway-awc.yaml \
	  --extra-gateway gateway-hyperfe=loadtest/configs/gateway-hyper-frontend.yaml \
	  $(call policy-args,$(CARGO_TARGET_DIR)/debug/rustygate) $(tracing-args) $(plugin-args)

fuzz: ## each fuzz target (gateway/fuzz) under libFuzzer for FUZZ_SECONDS (default 60) s; crashes become corpus entries that make test replays
	./scripts/fuzz.sh

instructions: build-release ## instructions per proxied request under valgrind's callgrind: a cost the box's load does not move (INSTR_ARGS: more targets, --top N)
	$(PYTHON) loadtest/instructions.py $(INSTR_ARGS)

soak: build-release ## leak check: RSS across 1,000,000 requests with connection churn
	$(PYTHON) loadtest/soak.py

keychurn: build-release ## rate-limiter memory: 1,000,000 distinct keys, then eviction
	$(PYTHON) loadtest/keychurn.py

idle-conns: build-release ## hostile-client bounds: RSS of 10,000 idle keep-alive connections, all served after, the 503 past max_connections
	$(PYTHON) loadtest/idle_conns.py

stream: build-release ## 1 GiB up and down through the gateway: intact, bounded memory
	$(PYTHON) loadtest/stream.py
