# stampede — the two commands a newcomer needs are `make bench VIEWERS=5000` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/stampede
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# bench knobs (see README): make bench VIEWERS=5000 SCENARIO=baseline DURATION=60s TUNING=name
VIEWERS ?= 5000
SCENARIO ?= baseline
DURATION ?= 60s
TUNING ?=
ENV ?= local
OUT ?= results

# Test budget: CI kills at 90 min; keep the whole suite far below that.
TEST_TIMEOUT ?= 25m

.PHONY: help build test deps bench lint fmt clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/stampede (static, CGO off)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stampede

deps: ## install what the tests need (Debian packages when missing, Go modules)
	scripts/deps.sh

test: deps ## set up, then run every test with the race detector
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

bench: build ## run the bench: make bench VIEWERS=5000 [SCENARIO=baseline DURATION=60s TUNING=name]
	@echo "stampede bench is not built yet (issue: make bench VIEWERS=5000)."
	@echo "What works today: $(BIN) origin, see '$(BIN) help'."

lint: ## gofmt, go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build outputs
	rm -rf bin
