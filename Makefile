# stampede — the two commands a newcomer needs are `make bench VIEWERS=5000` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/stampede
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# bench knobs (see README): make bench VIEWERS=5000 SCENARIO=baseline DURATION=60s TUNING=name
# VIEWERS and DURATION default to the scenario's own (baseline: 5000 viewers, 60s).
VIEWERS ?=
SCENARIO ?= baseline
DURATION ?=
TUNING ?=
ENV ?= local
OUT ?= results
# more `stampede bench` flags, e.g. BENCH_FLAGS='--prometheus --keep'
BENCH_FLAGS ?=
comma := ,

# Test budget: CI kills at 90 min; keep the whole suite far below that.
TEST_TIMEOUT ?= 25m

.PHONY: help build test deps bench lint fmt clean bench-mirror

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/stampede (static, CGO off)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stampede

deps: ## install what the tests need (Debian packages when missing, Go modules)
	scripts/deps.sh

test: deps ## set up, then run every test with the race detector
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	cd loadgen/k6 && $(GO) test -race -mod=mod -timeout $(TEST_TIMEOUT) ./...

# The k6 extension is its own Go module (it links go.k6.io/k6, AGPL-3.0; the stampede
# module does not). -mod=mod above lets its go.sum follow the stampede module's go.mod.
.PHONY: k6
k6: ## build bin/k6: k6 v1.8.1 with the k6/x/stampede extension, as xk6 would (cached; README "Beyond one machine")
	GO=$(GO) bash loadgen/k6/build.sh $(CURDIR)/bin/k6

bench: build ## run the bench: make bench VIEWERS=5000 [SCENARIO=baseline DURATION=60s TUNING=name ENV=local]
	$(BIN) bench --scenario $(SCENARIO) --env $(ENV) $(if $(VIEWERS),--viewers $(VIEWERS)) $(if $(DURATION),--duration $(DURATION)) $(foreach t,$(subst $(comma), ,$(TUNING)),--tuning $(t)) $(BENCH_FLAGS)

# bench-mirror knobs: make bench-mirror MIRROR_CONNS=1000,5000 MIRROR_DURATION=5s MIRROR_ROUNDS=3
MIRROR_CONNS ?= 1000,5000
MIRROR_DURATION ?= 5s
MIRROR_ROUNDS ?= 3

bench-mirror: build ## stampede mirror vs real nginx: hit req/s + bytes/s (1 core each) and flash-crowd origin offload
	$(BIN) bench-mirror --connections $(MIRROR_CONNS) --duration $(MIRROR_DURATION) --rounds $(MIRROR_ROUNDS) --out $(OUT)

lint: ## gofmt, go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build outputs
	rm -rf bin
