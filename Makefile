# The two commands a newcomer needs:  make run   and   make test
# Everything builds once, in release mode (tests too), to keep CI time down.
SHELL := /bin/bash
CARGO ?= cargo
LOCAL := deploy/local
RUN_CALLS ?= 5000
RUN_RATE ?= 4000

.PHONY: build run test stack services stop bench chaos chaos-quick fmt clippy lint lint-deploy compose-up image schemas check-schemas report idle-cpu

build:
	$(LOCAL)/build_deps.sh
	$(CARGO) build --release --workspace --bins

stack: build
	$(LOCAL)/start.sh

services: stack
	$(LOCAL)/services.sh

## run: start broker + ClickHouse, create topics and tables, start every
## service, publish simulated switch traffic, wait, print what landed.
run: services
	@source $(LOCAL)/env.sh && run_id="run$$(date +%s)" && \
	  target/release/cdrctl simulate --calls $(RUN_CALLS) --rate $(RUN_RATE) --run-id $$run_id --expect-out $$CDR_STATE_DIR/expected-$$run_id.json && \
	  target/release/cdrctl wait --run-id $$run_id --calls $(RUN_CALLS) --timeout-secs 300 && \
	  sleep 3 && echo "=== what landed in ClickHouse for $$run_id ===" && \
	  target/release/cdrctl report --run-id $$run_id && \
	  echo "=== expected (from the simulator) ===" && cat $$CDR_STATE_DIR/expected-$$run_id.json

## test: every unit, property and end-to-end test, against the real broker
## and the real ClickHouse (started here if not running).
test: stack lint-deploy
	$(CARGO) test --release --workspace --no-fail-fast

## lint-deploy: the Dockerfile, the compose file and the Helm chart checked
## by hadolint, docker-compose config, helm lint/template and the
## Kubernetes schemas (tools from PyPI and Debian, cached).
lint-deploy:
	deploy/lint/check.sh

## compose-up: the production-like stack (Apache Kafka with SASL and ACLs,
## ClickHouse server, Grafana, Prometheus, every service) where Docker runs.
compose-up:
	deploy/compose/up.sh

## image: the one container image (every service and cdrctl).
image:
	docker build -t cdr-pipeline:local .

report:
	@source $(LOCAL)/env.sh && target/release/cdrctl report

## idle-cpu: each service's CPU over 60 s with no traffic (target <= 1% of a core).
idle-cpu: services
	$(LOCAL)/idle_cpu.sh 60

stop:
	$(LOCAL)/stop.sh

bench: stack
	BENCH_CALLS=$${BENCH_CALLS:-30000} $(CARGO) test --release -p cdr-e2e --test throughput -- --ignored --nocapture
	BENCH_CPS=$${BENCH_CPS:-1000} BENCH_SECS=$${BENCH_SECS:-30} $(CARGO) test --release -p cdr-e2e --test latency -- --ignored --nocapture
	$(CARGO) test --release -p cdr-e2e --test restart_cost -- --ignored --nocapture
	$(CARGO) bench -p cdr-e2e --bench stages
	$(CARGO) bench -p ratedeck
	$(CARGO) bench -p lrn

## chaos: the same traffic through a fresh stack once per fault (kill -9 of
## each service, broker and ClickHouse down, rolling SIGTERM, two instances,
## hostile input) and a table of every finance/NOC figure against the
## control. CHAOS_CALLS sets the plain calls per experiment (15000).
chaos: build
	$(CARGO) test --release -p cdr-e2e --test chaos -- --ignored --nocapture chaos_full

chaos-quick: build
	$(CARGO) test --release -p cdr-e2e --test chaos -- --nocapture chaos_subset

schemas: build
	target/release/cdrctl schemas --dir schemas/avro

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

lint: clippy
	$(CARGO) fmt --all -- --check
