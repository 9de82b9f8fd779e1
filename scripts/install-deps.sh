#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a fresh Debian 12 machine (as root).
# Idempotent and quick when everything is already there.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have pigz || need+=(pigz)
have gzip || need+=(gzip)
have sha256sum || need+=(coreutils)
have fusermount3 || need+=(fuse3)
have rclone || need+=(rclone)
have restic || need+=(restic)
have redis-server || need+=(redis-server)
have redis-cli || need+=(redis-tools)
have psql || need+=(postgresql-client-15)
have pgbench || need+=(postgresql-client-15)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
[ -x /usr/bin/time ] || need+=(time)
have python3 || need+=(python3)

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
