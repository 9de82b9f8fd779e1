#!/usr/bin/env bash
# Benchmark of the restic tier (issue 13), side by side in one run:
#
# 1. Deduplication: 48 hourly dumps of a generated database (DUMP, default 32 MiB) where about
#    1 % of rows change between dumps as in a real one: a contiguous run of rows updated, new
#    rows appended. Each is backed up (`TIERBACK_NOW` one hour apart) and synced to a restic
#    tier. Figure: bytes of the restic repository ÷ bytes of the same 48 blocked-gzip artifacts
#    (goal ≤ 0.1), and the anchor: `restic backup --stdin` of the same dumps into a repository
#    of its own, ÷ the same artifacts.
# 2. Reads of one larger dump (READ, default 512 MiB) from the restic tier, cold (fresh mount
#    process, page cache dropped): `cat` through the tierback mount against `restic mount` and
#    `restic dump` of the very same snapshot in the same repository (goals ≥ 1.5× and ≥ 1×).
#
# Usage: bench/restic.sh   (root, for drop_caches and FUSE)
# Build first: cargo build --release -p tierback --bin tierback --example gen_sql
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dump_size=${DUMP:-32MiB}
read_size=${READ:-512MiB}
hours=${HOURS:-48}
runs=${RUNS:-3}
tb="$root/target/release/tierback"
gen="$root/target/release/examples/gen_sql"
W=$(mktemp -d /tmp/tierback-bench-restic.XXXXXX)
mnt="$W/mnt"; rmnt="$W/restic-mnt"
mkdir -p "$mnt" "$rmnt"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for d in "$mnt" "$rmnt"; do umount -l "$d" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
. bench/lib.sh
wait_for() { for _ in $(seq 1 300); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; return 1; }

password_file="$W/restic.password"
echo bench-password > "$password_file"
write_config() {
    cat > "$W/tierback.toml" <<TOML
[catalog]
path = "$W/catalog.db"
[tiers.local]
type = "local"
path = "$W/tiers/local"
[tiers.restic]
type = "restic"
path = "$W/tiers/restic"
password = "file:$password_file"
[services.$1]
driver = "command"
command = ["cat", "$W/dump.sql"]
artifact = "$1"
extension = "sql"
TOML
}
export TIERBACK_CONFIG="$W/tierback.toml"

echo "== $hours hourly dumps of $dump_size, about 1 % of rows changed each hour"
"$gen" "$dump_size" 1 > "$W/base.sql"
"$gen" "$dump_size" 2 > "$W/fresh.sql"
write_config shop
"$tb" -q tiers setup > /dev/null
export RESTIC_PASSWORD=bench-password
restic -q -r "$W/anchor" init > /dev/null
# evolve.py HOUR: rewrites dump.sql as the database looks at that hour (deterministic).
cat > "$W/evolve.py" <<'PY'
import random, sys
hour, base, fresh, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rows = open(base, "rb").read().split(b"\n")
new = open(fresh, "rb").read().split(b"\n")
rng = random.Random(7)
taken = 0
for h in range(hour):
    n = len(rows) // 100
    # A contiguous run of rows updated (a batch job touching recent orders)...
    start = rng.randrange(len(rows) // 2, len(rows) - n)
    for i in range(start, start + n // 2):
        rows[i] = rows[i].replace(b"\t", b"\t~", 1) if b"\t" in rows[i] else rows[i] + b" "
    # ...and new rows appended.
    rows.extend(new[taken:taken + n // 2])
    taken += n // 2
open(out, "wb").write(b"\n".join(rows))
PY
for h in $(seq 0 $((hours - 1))); do
    python3 "$W/evolve.py" "$h" "$W/base.sql" "$W/fresh.sql" "$W/dump.sql"
    at=$(date -u -d "2026-01-01 00:00:00 UTC + $h hour" +%Y-%m-%dT%H:%M:%SZ)
    TIERBACK_NOW=$at "$tb" -q backup shop > /dev/null
    restic -q -r "$W/anchor" backup --stdin --stdin-filename dump.sql < "$W/dump.sql" > /dev/null
done
t0=$(now)
TIERBACK_NOW=2026-01-03T00:00:00Z "$tb" -q sync --tier restic > /dev/null
t1=$(now)
gz_bytes=$("$tb" list --json | python3 -c 'import json,sys; print(sum(a["stored_size"] for a in json.load(sys.stdin)))')
raw_bytes=$("$tb" list --json | python3 -c 'import json,sys; print(sum(a["raw_size"] for a in json.load(sys.stdin)))')
restic_tier_bytes=$(du -sb "$W/tiers/restic" | cut -f1)
anchor_bytes=$(du -sb "$W/anchor" | cut -f1)
restic -r "$W/tiers/restic" check -q > /dev/null

echo "== reads: one $read_size dump from the restic tier"
rm -rf "$W/tiers" "$W/catalog.db"*
"$gen" "$read_size" 3 > "$W/dump.sql"
write_config big
"$tb" -q tiers setup > /dev/null
"$tb" -q backup big > /dev/null
"$tb" -q sync --tier restic > /dev/null
bytes=$(stat -c %s "$W/dump.sql")
rel=$("$tb" list --json | python3 -c 'import json,sys; a=json.load(sys.stdin)[0]; print("big/restic/%s/%s" % (a["key"].split("/")[1], a["file"]))')
inner="/${rel#big/restic/}"; inner="/big${inner}"
snap=$(restic -r "$W/tiers/restic" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
time_cmd() { local t0 t1; drop; t0=$(now); "$@" > /dev/null; t1=$(now); python3 -c "print($t1 - $t0)"; }
median_of() { local out=(); for _ in $(seq "$runs"); do out+=("$("$@")"); done; median "${out[@]}"; }

tb_runs=()
for _ in $(seq "$runs"); do
    "$tb" mount "$mnt" & mpid=$!; pids+=("$mpid")
    wait_for "$mnt/big"
    tb_runs+=("$(time_cmd cat "$mnt/$rel")")
    cmp "$mnt/$rel" "$W/dump.sql"
    kill "$mpid"; wait "$mpid" || true
done
tb_s=$(median "${tb_runs[@]}")
dump_s=$(median_of time_cmd restic -r "$W/tiers/restic" dump "$snap" "$inner")
restic -r "$W/tiers/restic" mount "$rmnt" > /dev/null 2>&1 & rpid=$!; pids+=("$rpid")
wait_for "$rmnt/snapshots/latest"
rfile="$rmnt/ids/${snap:0:8}$inner"
wait_for "$rfile"
mount_s=$(median_of time_cmd cat "$rfile")
kill "$rpid"; wait "$rpid" 2>/dev/null || true

mbps() { python3 -c "print(round($bytes / 1e6 / $1))"; }
ratio() { python3 -c "print('%.3f' % ($1 / $2))"; }
echo
echo "== results ($(nproc) cores; reads: median of $runs cold runs)"
printf '%-44s %12s bytes\n' "$hours dumps, raw" "$raw_bytes"
printf '%-44s %12s bytes\n' "$hours blocked-gzip artifacts" "$gz_bytes"
printf '%-44s %12s bytes  (%s s to sync)\n' "restic tier (tierback, rustic_core)" "$restic_tier_bytes" "$(python3 -c "print(round($t1 - $t0, 1))")"
printf '%-44s %12s bytes\n' "restic backup --stdin (anchor)" "$anchor_bytes"
printf '%-44s %8s MB/s\n' "tierback mount cat from the restic tier" "$(mbps "$tb_s")"
printf '%-44s %8s MB/s\n' "restic mount cat (same snapshot)" "$(mbps "$mount_s")"
printf '%-44s %8s MB/s\n' "restic dump (same snapshot)" "$(mbps "$dump_s")"
echo
echo "ratios (goal): restic tier / artifacts $(ratio "$restic_tier_bytes" "$gz_bytes") (<= 0.1), anchor restic --stdin / artifacts $(ratio "$anchor_bytes" "$gz_bytes"), mount vs restic mount $(ratio "$mount_s" "$tb_s")x (>= 1.5x), mount vs restic dump $(ratio "$dump_s" "$tb_s")x (>= 1x)"
