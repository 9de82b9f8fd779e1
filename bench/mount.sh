#!/usr/bin/env bash
# Benchmark of the read-only mount on a generated 1 GiB SQL dump, side by side in one run:
# cold sequential `cat` through the mount against `gzip -dc`, `pigz -dc`, `restic mount` and (if
# installed) `borg mount` of the same dump; warm re-read; random 4 KiB reads (p50, cold and
# warm); peak RSS of the mount process (after sequential reads, and after random reads, which
# fill the block cache). Prints the figures and the ratios the issue asks for.
#
# Every time is the median of RUNS runs (default 3; this machine is shared and single runs vary by
# ±10 %), each cold one after dropping the page cache.
#
# Usage: bench/mount.sh [SIZE]   (default 1GiB; needs root for drop_caches and FUSE)
# Build first: cargo build --release -p tierback --bin tierback --example gen_sql
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
size=${1:-1GiB}
runs=${RUNS:-3}
tb="$root/target/release/tierback"
gen="$root/target/release/examples/gen_sql"
W=$(mktemp -d /tmp/tierback-bench.XXXXXX)
mnt="$W/mnt"; rmnt="$W/restic-mnt"; bmnt="$W/borg-mnt"
mkdir -p "$mnt" "$rmnt" "$bmnt"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for d in "$mnt" "$rmnt" "$bmnt"; do umount -l "$d" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT

. bench/lib.sh
# mbps SECONDS → MB/s of the dump
mbps() { python3 -c "print(round($bytes / 1e6 / $1))"; }
# time_cat FILE → seconds to read FILE to /dev/null
time_cat() { local t0 t1; t0=$(now); cat "$1" > /dev/null; t1=$(now); python3 -c "print($t1 - $t0)"; }
# median_of CMD... → median over $runs runs of CMD's printed seconds
median_of() { local out=(); for _ in $(seq "$runs"); do out+=("$("$@")"); done; median "${out[@]}"; }
cold_cat() { drop; time_cat "$1"; }
# time_dc TOOL FILE → seconds of TOOL -dc FILE, cold
time_dc() { local t0 t1; drop; t0=$(now); "$1" -dc "$2" > /dev/null; t1=$(now); python3 -c "print($t1 - $t0)"; }
wait_for() { for _ in $(seq 1 200); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; return 1; }

echo "== generating $size dump"
"$gen" "$size" > "$W/dump.sql"
bytes=$(stat -c %s "$W/dump.sql")
gzip -6 -c "$W/dump.sql" > "$W/dump.sql.gz"

cat > "$W/tierback.toml" <<TOML
[catalog]
path = "$W/catalog.db"
[defaults]
block_size = "1MiB"
[tiers.local]
type = "local"
path = "$W/tiers/local"
[services.bench]
driver = "command"
command = ["cat", "$W/dump.sql"]
artifact = "bench"
extension = "sql"
TOML
export TIERBACK_CONFIG="$W/tierback.toml"
echo "== tierback backup"
"$tb" -q backup bench > /dev/null
rel=$("$tb" list --json | python3 -c 'import json,sys; a=json.load(sys.stdin)[0]; print("bench/local/%s/%s" % (a["key"].split("/")[1], a["file"]))')

start_mount() {
    "$tb" mount "$mnt" & mpid=$!; pids+=("$mpid")
    wait_for "$mnt/bench"
}
stop_mount() { kill "$mpid"; wait "$mpid" || true; }

echo "== gzip -dc / pigz -dc (cold)"
gzip_s=$(median_of time_dc gzip "$W/dump.sql.gz")
pigz_s=$(median_of time_dc pigz "$W/dump.sql.gz")

echo "== tierback mount: cold, warm"
start_mount
# Cold = a fresh mount process (empty block cache) and an empty page cache. (A loop here, not
# median_of: the mount must be restarted by this shell, not a subshell.)
cold_runs=()
for _ in $(seq "$runs"); do
    stop_mount; start_mount
    cold_runs+=("$(cold_cat "$mnt/$rel")")
done
cold_s=$(median "${cold_runs[@]}")
seq_rss_kb=$(grep VmHWM "/proc/$mpid/status" | awk '{print $2}')
# Warm re-read against the plain dump read from the page cache, interleaved so that both see the
# same machine: this VM's memory speed drifts, and its proactive reclaim (DAMON `pageout`) takes
# page-cache pages left idle for a minute, so one measured far from the other is not comparable.
# Each file is read twice first: a page's second access moves it to the active list, once.
for f in "$mnt/$rel" "$W/dump.sql"; do cat "$f" > /dev/null; cat "$f" > /dev/null; done
warm_runs=(); pagecache_runs=()
for _ in $(seq $((runs * 3))); do
    warm_runs+=("$(time_cat "$mnt/$rel")")
    pagecache_runs+=("$(time_cat "$W/dump.sql")")
done
warm_s=$(median "${warm_runs[@]}")
pagecache_s=$(median "${pagecache_runs[@]}")
cmp "$mnt/$rel" "$W/dump.sql"

# Random 4 KiB reads (randread in lib.sh): cold = fresh mount process (empty block cache) and
# dropped page cache.
stop_mount; start_mount; drop
rand_cold=$(randread "$mnt/$rel" "$bytes")
rand_warm=$(randread "$mnt/$rel" "$bytes")
rss_kb=$(grep VmHWM "/proc/$mpid/status" | awk '{print $2}')
stop_mount

echo "== restic mount"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$W/restic"
restic init -q > /dev/null
(cd "$W" && restic backup -q dump.sql > /dev/null)
restic mount "$rmnt" > /dev/null 2>&1 & rpid=$!; pids+=("$rpid")
wait_for "$rmnt/snapshots/latest"
rfile=$(find "$rmnt/snapshots/latest/" -name dump.sql | head -1)
restic_s=$(median_of cold_cat "$rfile")
restic_rand=$(randread "$rfile" "$bytes")
kill "$rpid"; wait "$rpid" 2>/dev/null || true

borg_s=""
if command -v borg > /dev/null; then
    echo "== borg mount"
    export BORG_REPO="$W/borg" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
    borg init -e none > /dev/null 2>&1
    (cd "$W" && borg create --compression zlib,6 ::a dump.sql > /dev/null 2>&1)
    borg mount ::a "$bmnt" > /dev/null 2>&1
    wait_for "$bmnt/dump.sql"
    borg_s=$(median_of cold_cat "$bmnt/dump.sql")
    borg_rand=$(randread "$bmnt/dump.sql" "$bytes")
    borg umount "$bmnt" || umount -l "$bmnt"
fi

echo
echo "== results ($bytes bytes, $(nproc) cores, median of $runs runs)"
printf '%-34s %8s MB/s\n' "gzip -dc (cold)" "$(mbps "$gzip_s")"
printf '%-34s %8s MB/s\n' "pigz -dc (cold)" "$(mbps "$pigz_s")"
printf '%-34s %8s MB/s\n' "restic mount cat (cold)" "$(mbps "$restic_s")"
[ -n "$borg_s" ] && printf '%-34s %8s MB/s\n' "borg mount cat (cold)" "$(mbps "$borg_s")"
printf '%-34s %8s MB/s\n' "tierback mount cat (cold)" "$(mbps "$cold_s")"
printf '%-34s %8s MB/s\n' "tierback mount cat (warm)" "$(mbps "$warm_s")"
printf '%-34s %8s MB/s\n' "plain file from page cache" "$(mbps "$pagecache_s")"
printf '%-34s %8s ms\n' "tierback random 4 KiB p50 cold" "$rand_cold"
printf '%-34s %8s ms\n' "tierback random 4 KiB p50 warm" "$rand_warm"
printf '%-34s %8s ms\n' "restic random 4 KiB p50" "$restic_rand"
[ -n "$borg_s" ] && printf '%-34s %8s ms\n' "borg random 4 KiB p50" "$borg_rand"
printf '%-34s %8s MiB\n' "tierback peak RSS, sequential read" "$((seq_rss_kb / 1024))"
printf '%-34s %8s MiB\n' "tierback peak RSS, random reads" "$((rss_kb / 1024))"
ratio() { python3 -c "print('%.2fx' % ($1 / $2))"; }
echo
echo "ratios (goal): vs gzip $(ratio "$gzip_s" "$cold_s") (>= 5x), vs pigz $(ratio "$pigz_s" "$cold_s"), vs restic $(ratio "$restic_s" "$cold_s") (>= 2.5x)$( [ -n "$borg_s" ] && echo ", vs borg $(ratio "$borg_s" "$cold_s") (>= 1.8x)"), warm/cold $(ratio "$cold_s" "$warm_s"), warm/page cache $(ratio "$pagecache_s" "$warm_s") (>= 0.9x), random 4 KiB cold p50 $rand_cold ms (<= 1.5 ms)"
