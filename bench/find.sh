#!/usr/bin/env bash
# `find` over the mounted tree of a catalog with 10,000 backups (goal: <= 0.5 s), cold (first
# walk after mounting) and warm. The catalog is synthetic (engine/examples/fill_catalog.rs): the
# tree comes from the catalog alone, so no file needs to exist to list it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
n=${1:-10000}
cargo build -q --release -p tierback --bin tierback
cargo build -q --release -p tierback-engine --example fill_catalog
W=$(mktemp -d /tmp/tierback-bench-find.XXXXXX)
trap 'umount -l "$W/mnt" 2>/dev/null || true; rm -rf "$W"' EXIT
cat > "$W/tb.toml" <<TOML
[catalog]
path = "$W/catalog.db"
[tiers.local]
type = "local"
path = "$W/local"
TOML
"$root/target/release/examples/fill_catalog" "$W/catalog.db" "$n"
mkdir -p "$W/mnt"
TIERBACK_CONFIG="$W/tb.toml" "$root/target/release/tierback" mount "$W/mnt" --daemon
t() { local s e; s=$(date +%s.%N); find "$W/mnt" > "$W/found"; e=$(date +%s.%N); python3 -c "print(f'{$e - $s:.3f}')"; }
cold=$(t); warm=$(t)
entries=$(wc -l < "$W/found")
echo "find over $n backups ($entries entries): cold ${cold} s, warm ${warm} s  (goal <= 0.5 s: $(python3 -c "print('PASS' if $cold <= 0.5 else 'FAIL')"))"
