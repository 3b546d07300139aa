# Aqueduct: every target installs what it needs first (tools/install-deps.sh) and is safe to run twice.

CARGO ?= cargo

.PHONY: all deps build quickstart test chaos lint fmt bench clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

## End to end on this machine: ZooKeeper, two Kafka clusters, two nodes, a datastream made over REST, records flowing.
quickstart: deps
	$(CARGO) run --quiet -p aqueduct-testkit --bin aqueduct-quickstart -- $(ARGS)

## Every test: formatting, lints, unit and property tests, integration tests against real Kafka.
test: deps lint
	$(CARGO) test --workspace --no-fail-fast

## The failure suite alone, every scenario (the fast ones also run in `make test`).
chaos: deps
	$(CARGO) test -p aqueduct-tests --test chaos -- --include-ignored --test-threads=1 --nocapture

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Aqueduct against Kafka MirrorMaker 2, a kcat pipe and the bare-librdkafka ceiling (throughput, CPU, memory,
## latency); assignment time of the balancer. Writes target/bench-throughput.md.
bench: deps
	$(CARGO) bench -p aqueduct-benches --bench throughput
	$(CARGO) bench -p aqueduct-benches --bench balancer

clean:
	$(CARGO) clean
