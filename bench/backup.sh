#!/usr/bin/env bash
# Backup and restore speed of a 1 GiB generated SQL dump against gzip -9 and pigz -9 (compress)
# and gzip -dc and pigz -dc (decompress), measured side by side in one run (medians of RUNS
# rounds, default 3); peak memory of a backup for two dump sizes. The backup includes its
# round-trip check (every member inflated and compared with its block).
# Usage: bench/backup.sh [SIZE] (default 1GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
size=${1:-1GiB}
tb="$root/target/release/tierback"
gen="$root/target/release/examples/gen_sql"
if [ ! -x "$tb" ] || [ ! -x "$gen" ]; then
    echo "build first: cargo build --release -p tierback --bin tierback --example gen_sql" >&2
    exit 1
fi
. bench/lib.sh
w=$(mktemp -d /tmp/tierback-bench.XXXXXX)
trap 'rm -rf "$w"' EXIT

"$gen" "$size" 1 > "$w/dump.sql"
"$gen" 128MiB 2 > "$w/small.sql"
cat "$w/dump.sql" "$w/small.sql" > /dev/null   # both in the page cache for every contestant

cat > "$w/tb.toml" <<TOML
[catalog]
path = "$w/catalog.db"
[tiers.local]
type = "local"
path = "$w/local"
[services.big]
driver = "command"
command = ["cat", "$w/dump.sql"]
extension = "sql"
[services.small]
driver = "command"
command = ["cat", "$w/small.sql"]
extension = "sql"
TOML
export TIERBACK_CONFIG="$w/tb.toml"

# timed NAME CMD...: wall seconds and peak RSS (KiB) of CMD, appended to $w/NAME.time (one line
# per run); secs NAME gives the median over the runs, rss NAME the largest.
timed() { local name=$1; shift; /usr/bin/time -f "%e %M" -a -o "$w/$name.time" "$@"; }
secs() { local v; mapfile -t v < <(cut -d' ' -f1 "$w/$1.time"); median "${v[@]}"; }
rss() { cut -d' ' -f2 "$w/$1.time" | sort -g | tail -1; }

# RUNS rounds (default 3; single runs vary by ±10 % on a shared machine), each contestant once
# per round, so that each median is of runs interleaved with the others'.
runs=${RUNS:-3}
for r in $(seq "$runs"); do
    timed gzip9 sh -c "gzip -9 -c '$w/dump.sql' > '$w/dump.gzip9.gz'"
    timed pigz9 sh -c "pigz -9 -p 2 -c '$w/dump.sql' > '$w/dump.pigz9.gz'"
    # A distinct time per round: each round's backup is a new artifact.
    export TIERBACK_NOW="2026-06-0${r}T02:00:00Z"
    timed tb_backup "$tb" -q backup big
    timed tb_backup_small "$tb" -q backup small
done
unset TIERBACK_NOW
stored=$(find "$w/local/big" -name '*.sql.gz' | head -1)
path=$("$tb" list --json --service big | python3 -c 'import json,sys; a=json.load(sys.stdin)[0]; print("big/local/%s/%s" % (a["key"].split("/")[1], a["file"]))')

for _ in $(seq "$runs"); do
    timed gunzip sh -c "gzip -dc '$w/dump.gzip9.gz' > /dev/null"
    timed unpigz sh -c "pigz -dc '$w/dump.gzip9.gz' > /dev/null"
    timed tb_cat sh -c "'$tb' cat '$path' > /dev/null"
done
"$tb" cat "$path" | cmp - "$w/dump.sql"

raw=$(stat -c %s "$w/dump.sql")
s_gzip=$(stat -c %s "$w/dump.gzip9.gz"); s_pigz=$(stat -c %s "$w/dump.pigz9.gz"); s_tb=$(stat -c %s "$stored")

python3 - "$raw" "$s_gzip" "$s_pigz" "$s_tb" \
  "$(secs gzip9)" "$(secs pigz9)" "$(secs tb_backup)" "$(secs gunzip)" "$(secs unpigz)" "$(secs tb_cat)" \
  "$(rss tb_backup)" "$(rss tb_backup_small)" <<'PY'
import sys
raw, s_gzip, s_pigz, s_tb = map(int, sys.argv[1:5])
t_gzip, t_pigz, t_tb, d_gzip, d_pigz, d_tb = map(float, sys.argv[5:11])
rss_big, rss_small = map(int, sys.argv[11:13])
mb = raw / 1e6
def rate(t): return f"{mb / max(t, 1e-9):7.1f} MB/s"
print(f"dump: {raw / 2**20:.0f} MiB generated SQL; times are wall clock (medians), same machine, same run")
print(f"{'':24}{'time':>9}  {'throughput':>12}  {'stored':>12}")
print(f"{'gzip -9 -c':24}{t_gzip:8.2f}s  {rate(t_gzip)}  {s_gzip:12d}")
print(f"{'pigz -9 -p 2':24}{t_pigz:8.2f}s  {rate(t_pigz)}  {s_pigz:12d}")
print(f"{'tierback backup':24}{t_tb:8.2f}s  {rate(t_tb)}  {s_tb:12d}")
print(f"{'gzip -dc':24}{d_gzip:8.2f}s  {rate(d_gzip)}")
print(f"{'pigz -dc':24}{d_pigz:8.2f}s  {rate(d_pigz)}")
print(f"{'tierback cat':24}{d_tb:8.2f}s  {rate(d_tb)}")
checks = [
    ("backup time / gzip -9 time", t_tb / t_gzip, "<=", 0.36),
    ("backup time / pigz -9 time", t_tb / t_pigz, "<=", 0.95),
    ("stored size / gzip -9 size", s_tb / s_gzip, "<=", 1.0),
    ("cat throughput / gzip -dc", d_gzip / d_tb, ">=", 6.5),
    ("cat throughput / pigz -dc", d_pigz / d_tb, ">=", 2.0),
    ("backup peak RSS 1 GiB / 128 MiB dump", rss_big / rss_small, "<=", 1.5),
]
print()
for name, v, op, goal in checks:
    ok = v <= goal if op == "<=" else v >= goal
    print(f"{name:40} {v:6.3f}  goal {op} {goal:<5} {'PASS' if ok else 'FAIL'}")
print(f"{'backup peak RSS':40} {rss_big / 1024:6.1f} MiB (1 GiB dump), {rss_small / 1024:.1f} MiB (128 MiB dump)")
PY
