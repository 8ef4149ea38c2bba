# LiveChat analytics pipeline. `make run` and `make test` work on a fresh
# Debian 12 machine as root: they install and start what they need.
SHELL := /bin/bash
GO ?= go
BIN := bin/lcpipe
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
CHDB_VENV := .cache/chdb-venv
GOTESTFLAGS ?= -count=1 -timeout 30m
export CHDB_PYTHON ?= $(CURDIR)/$(CHDB_VENV)/bin/python

.PHONY: all build run test test-unit fuzz-smoke chaos bench bench-ingest bench-processor bench-processor-quick services-up services-down services-status lint chdb deps clean compose-env compose-up

all: build

deps: ## Go toolchain check and module download
	@command -v $(GO) >/dev/null || { echo "Go is required (https://go.dev/dl)"; exit 1; }
	$(GO) mod download

build: deps ## build bin/lcpipe
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/lcpipe

services-up: ## start local Kafka (KRaft) and ClickHouse (no-op when running)
	scripts/services.sh up

services-down: ## stop them by their PID files
	scripts/services.sh down

services-status:
	scripts/services.sh status

compose-env: ## .env for docker compose: random passwords (kept once written), compose subnet
	scripts/compose-env.sh

compose-up: compose-env ## the whole pipeline in Docker; only the webhook port is public
	docker compose up --build -d

chdb: $(CHDB_VENV)/.ok ## virtualenv with PyPI's chdb (current ClickHouse engine) for SQL checks
$(CHDB_VENV)/.ok:
	@command -v python3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv; }
	python3 -m venv $(CHDB_VENV) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && python3 -m venv $(CHDB_VENV); }
	$(CHDB_VENV)/bin/pip install -q --disable-pip-version-check chdb
	touch $@

test: build services-up chdb ## all tests, integration included, on real services
	$(GO) vet ./...
	$(GO) test $(GOTESTFLAGS) ./...
	$(MAKE) fuzz-smoke

# Each fuzz target for FUZZTIME (CI: 10s each, about a minute in all with the
# builds); a longer local run: make fuzz-smoke FUZZTIME=10m. Inputs that fail
# are written to the package's testdata/fuzz and become regression seeds.
FUZZTIME ?= 10s
FUZZ_TARGETS := ./ingest:FuzzParseEnvelope ./internal/livechat:FuzzDecode ./processor:FuzzEventIdentity ./ingest/spool:FuzzSegmentReader
fuzz-smoke: ## run every fuzz target briefly (FUZZTIME each)
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

test-unit: ## tests that need no service (still fail, never skip, if a service is missing)
	$(GO) test -count=1 -short ./...

chaos: deps ## full chaos test: 1M webhooks while every component is killed -9 (CHAOS_WEBHOOKS, CHAOS_RATE, CHAOS_SEED, ... size it; see chaos/)
	scripts/services.sh install
	CHAOS_FULL=1 $(GO) test -count=1 -timeout 4h -run '^TestChaos$$' -v ./chaos/

bench: bench-ingest bench-processor ## all benchmarks (see BENCHMARKS.md)

bench-ingest: build services-up
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m -v ./ingest/...

bench-processor: build services-up ## processor and its floor, 1M webhooks (LCPIPE_BENCH_* knobs: processor/bench_test.go)
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./processor/...

bench-processor-quick: build services-up ## the same at 300k webhooks
	LCPIPE_BENCH_WEBHOOKS=300000 $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./processor/...

run: build services-up ## the whole pipeline on local services
	$(BIN) migrate
	scripts/run.sh

lint: ## gofmt + go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
