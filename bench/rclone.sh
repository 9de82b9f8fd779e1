#!/usr/bin/env bash
# 1 MiB ranged reads from an rclone crypt remote (over a local directory): RcloneStore's one
# long-lived `rclone serve http` against one `rclone cat --offset --count` process per block.
# Prints both p50s and their ratio. Knobs: TIERBACK_BENCH_MIB (object size, default 256),
# TIERBACK_BENCH_READS (default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rclone >/dev/null || { echo "rclone is not installed (apt-get install rclone)" >&2; exit 1; }
cargo test -q -p tierback-tests --test rclone_bench -- --ignored --nocapture 2>&1 |
    grep -E '^(object|1 MiB|p50 ratio)'
