# The README's two commands: `make demo` and `make test`. CI runs `make test` (.ci/run).
CARGO ?= cargo

.PHONY: all build deps demo-deps test lint unit demo bench clean install install-files uninstall

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

# `make install`: the release binary, its man page, bash/zsh/fish completions and the systemd
# units under $(DESTDIR)$(PREFIX). `make install-files BIN=…` installs a binary already built
# (the test does it with target/debug/tierback into a scratch DESTDIR).
PREFIX ?= /usr/local
DESTDIR ?=
BIN ?= target/release/tierback
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man/man1
BASHCOMPDIR = $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR = $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR = $(PREFIX)/share/fish/vendor_completions.d
# systemd reads /usr/local/lib/systemd/system as well as /usr/lib/systemd/system.
UNITDIR ?= $(PREFIX)/lib/systemd/system
UNITS = $(wildcard docs/systemd/*.service docs/systemd/*.timer)

install:
	$(CARGO) build --release -p tierback --bin tierback
	$(MAKE) install-files BIN=target/release/tierback

install-files:
	@test -x "$(BIN)" || { echo "$(BIN) missing: build it first (make install does)" >&2; exit 1; }
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)" "$(DESTDIR)$(BASHCOMPDIR)" \
		"$(DESTDIR)$(ZSHCOMPDIR)" "$(DESTDIR)$(FISHCOMPDIR)" "$(DESTDIR)$(UNITDIR)"
	install -m 0755 "$(BIN)" "$(DESTDIR)$(BINDIR)/tierback"
	"$(BIN)" man > "$(DESTDIR)$(MANDIR)/tierback.1"
	"$(BIN)" completions bash > "$(DESTDIR)$(BASHCOMPDIR)/tierback"
	"$(BIN)" completions zsh > "$(DESTDIR)$(ZSHCOMPDIR)/_tierback"
	"$(BIN)" completions fish > "$(DESTDIR)$(FISHCOMPDIR)/tierback.fish"
	chmod 0644 "$(DESTDIR)$(MANDIR)/tierback.1" "$(DESTDIR)$(BASHCOMPDIR)/tierback" \
		"$(DESTDIR)$(ZSHCOMPDIR)/_tierback" "$(DESTDIR)$(FISHCOMPDIR)/tierback.fish"
	# The units name /usr/local/bin/tierback: point them at $(BINDIR).
	for u in $(UNITS); do \
		sed 's|/usr/local/bin/tierback|$(BINDIR)/tierback|g' "$$u" > "$(DESTDIR)$(UNITDIR)/$$(basename "$$u")" && \
		chmod 0644 "$(DESTDIR)$(UNITDIR)/$$(basename "$$u")" || exit 1; \
	done
	@echo "installed under $(DESTDIR)$(PREFIX); with systemd: systemctl daemon-reload && systemctl enable --now tierback-run.timer tierback-status.timer"

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/tierback" "$(DESTDIR)$(MANDIR)/tierback.1" \
		"$(DESTDIR)$(BASHCOMPDIR)/tierback" "$(DESTDIR)$(ZSHCOMPDIR)/_tierback" \
		"$(DESTDIR)$(FISHCOMPDIR)/tierback.fish"
	for u in $(UNITS); do rm -f "$(DESTDIR)$(UNITDIR)/$$(basename "$$u")"; done
