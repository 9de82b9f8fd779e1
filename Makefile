# The README's two commands: `make demo` and `make test`. CI runs `make test` (.ci/run).
CARGO ?= cargo

.PHONY: all build deps test lint unit demo bench clean

all: build

deps:
	bash scripts/install-deps.sh

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Everything, with the real servers and mounts the tests start themselves.
test: deps lint
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace -- --test-threads=2
	$(CARGO) test --workspace --doc
	promtool check rules docs/prometheus/tierback-alerts.yml
	cd docs/prometheus && promtool test rules tierback-alerts.test.yml

demo: deps
	$(CARGO) build --release -p tierback --bin tierback --example gen_sql
	bash scripts/demo.sh

bench: deps
	$(CARGO) build --release -p tierback --bin tierback --example gen_sql
	bash bench/run.sh

clean:
	$(CARGO) clean
	rm -rf demo
