# The README's two commands: `make demo` and `make test`. CI runs `make test` (.ci/run).
CARGO ?= cargo

.PHONY: all build deps demo-deps test lint unit demo bench clean

all: build

deps:
	bash scripts/install-deps.sh

# Only what the demo uses (no Garage build, no moto, no database servers).
demo-deps:
	bash scripts/install-deps.sh demo

build:
	$(CARGO) build --workspace --all-targets

# Every shell script in the repository.
SHELL_SCRIPTS = $(wildcard scripts/*.sh bench/*.sh fuzz/*.sh) .ci/run

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@command -v shellcheck >/dev/null || { echo "shellcheck missing: make deps (or apt-get install shellcheck)" >&2; exit 1; }
	shellcheck $(SHELL_SCRIPTS)

# Everything, with the real servers and mounts the tests start themselves.
test: deps lint
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace -- --test-threads=2
	$(CARGO) test --workspace --doc
	promtool check rules docs/prometheus/tierback-alerts.yml
	cd docs/prometheus && promtool test rules tierback-alerts.test.yml

demo: demo-deps
	$(CARGO) build --release -p tierback --bin tierback --example gen_sql
	bash scripts/demo.sh

bench: deps
	$(CARGO) build --release -p tierback --bin tierback --example gen_sql
	bash bench/run.sh

clean:
	$(CARGO) clean
	rm -rf demo

# Fuzzing of what a tier feeds the parsers (member headers, .idx, .meta.json, config) for
# FUZZ_TIME seconds in all (default 10 minutes): cargo-fuzz targets in fuzz/, or the property
# tests with a large PROPTEST_CASES where cargo-fuzz cannot run (fuzz/run.sh).
FUZZ_TIME ?= 600
.PHONY: fuzz
fuzz:
	bash fuzz/run.sh $(FUZZ_TIME)
