#!/usr/bin/env bash
# Installs what tierback needs on a fresh Debian 12 machine (as root). Idempotent and quick when
# everything is already there.
#   install-deps.sh        everything: the tests, the benchmarks, lint (`make deps`, `make test`)
#   install-deps.sh demo   only what `make demo` uses: a C compiler for the build, gzip and
#                          sha256sum for its checks, FUSE for the mount, python3 to read `list
#                          --json`; no Garage build, no moto, no servers
set -euo pipefail

mode=${1:-full}
case "$mode" in
    full | demo) ;;
    *)
        echo "usage: $0 [full|demo]" >&2
        exit 2
        ;;
esac

need=()
have() { command -v "$1" >/dev/null 2>&1; }
# The demo's needs (and everyone's). cmp, find, stat and umount are in every Debian install.
have cc || need+=(gcc libc6-dev)
have gzip || need+=(gzip)
have sha256sum || need+=(coreutils)
have fusermount3 || need+=(fuse3)
have python3 || need+=(python3)
if [ "$mode" = full ]; then
    have pigz || need+=(pigz)
    have rclone || need+=(rclone)
    have restic || need+=(restic)
    have redis-server || need+=(redis-server)
    have redis-cli || need+=(redis-tools)
    have psql || need+=(postgresql-client-15)
    have pgbench || need+=(postgresql-client-15)
    [ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
    [ -x /usr/bin/time ] || need+=(time)
    have s3cmd || need+=(s3cmd)
    have curl || need+=(curl)
    # promtool: the tests lint the exported metrics and test the alert rules with it.
    have promtool || need+=(prometheus)
    # `make lint` checks every shell script.
    have shellcheck || need+=(shellcheck)
    # The TLS tests make their certificates with it.
    have openssl || need+=(openssl)
    # The install test renders the man page.
    have groff || need+=(groff-base)
    python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
fi

if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: need root to install ${need[*]} (or install them yourself)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! have cargo; then
    echo "error: cargo missing: install a current stable Rust (rustup), then run this again" >&2
    exit 1
fi
[ "$mode" = full ] || exit 0

# Garage, the S3-compatible server the s3-tier tests start. Built from crates.io: about 11 minutes
# on two cores, so only when missing. Its own target dir keeps it out of the workspace build.
if ! have garage && [ ! -x "$HOME/.cargo/bin/garage" ]; then
    echo "installing garage (cargo install, ~11 min, once)"
    CARGO_TARGET_DIR="${GARAGE_BUILD_DIR:-/tmp/garage-build}" cargo install garage --locked --version 2.5.0
fi

# moto server: in-memory S3 with versioning and lifecycle, for `tiers setup` tests (Garage lacks
# versioning). In a venv so the system Python stays untouched.
MOTO_VENV="${MOTO_VENV:-/opt/tierback-venv}"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
    echo "installing moto[server] into $MOTO_VENV"
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/pip" install -q 'moto[server]'
fi
