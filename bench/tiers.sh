#!/usr/bin/env bash
# The object tier against the local one, side by side in one run, on a single-node Garage on
# loopback: `tierback sync` of a backup to Garage against `rclone copyto` and `s3cmd put` of the
# same stored file, then cold sequential reads through the mount of the local copy and of the
# object-tier copy (goal: the S3 read at >= 85 % of the local read), and random 4 KiB reads of both.
#   bash bench/tiers.sh [SIZE]     (default 1GiB; root for drop_caches and FUSE)
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

W=$(mktemp -d /tmp/tierback-bench-tiers.XXXXXX)
cleanup() {
    umount -l "$W/mnt" 2>/dev/null || true
    [ -n "${gpid:-}" ] && kill "$gpid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
# Artifacts are gzip already: a second compression only costs CPU (MinIO does none by default).
start_garage "$W" 'compression_level = "none"'

"$gen" "$size" 3 > "$W/dump.sql"
export TB_AK=$AK TB_SK=$SK
cat > "$W/tb.toml" <<TOML
[catalog]
path = "$W/catalog.db"
[tiers.local]
type = "local"
path = "$W/local"
[tiers.minio]
type = "s3"
endpoint = "$EP"
bucket = "bench"
region = "garage"
access_key = "env:TB_AK"
secret_key = "env:TB_SK"
[services.shop]
driver = "command"
command = ["cat", "$W/dump.sql"]
extension = "sql"
TOML
export TIERBACK_CONFIG="$W/tb.toml"
"$tb" -q backup shop
gz=$(find "$W/local/shop" -name '*.sql.gz')
stored=$(stat -c %s "$gz")
raw_size=$(stat -c %s "$W/dump.sql")
cat "$gz" > /dev/null

secs() { local t0 t1; t0=$(now); "$@" > /dev/null 2> "$W/err" || { cat "$W/err" >&2; exit 1; }; t1=$(now); python3 -c "print($t1 - $t0)"; }
t_sync=$(secs "$tb" sync)
export RCLONE_CONFIG_G_TYPE=s3 RCLONE_CONFIG_G_PROVIDER=Other RCLONE_CONFIG_G_ENDPOINT=$EP \
    RCLONE_CONFIG_G_REGION=garage RCLONE_CONFIG_G_ACCESS_KEY_ID=$AK \
    RCLONE_CONFIG_G_SECRET_ACCESS_KEY=$SK RCLONE_CONFIG_G_FORCE_PATH_STYLE=true
t_rclone=$(secs env -u AWS_CA_BUNDLE rclone copyto "$gz" g:bench/rclone/copy.gz --s3-upload-concurrency 4 --s3-chunk-size 16M)
if command -v s3cmd > /dev/null; then
    cat > "$W/s3cfg" <<EOT
[default]
access_key = $AK
secret_key = $SK
host_base = 127.0.0.1:$S3P
host_bucket = 127.0.0.1:$S3P
bucket_location = garage
use_https = False
EOT
    t_s3cmd=$(secs s3cmd -c "$W/s3cfg" put "$gz" s3://bench/s3cmd/copy.gz --multipart-chunk-size-mb=16)
else
    t_s3cmd=0
fi

mkdir -p "$W/mnt"
"$tb" mount "$W/mnt" --daemon
local_path=$("$tb" list --json | python3 -c 'import json,sys; a=json.load(sys.stdin)[0]; print("shop/local/%s/%s" % (a["key"].split("/")[1], a["file"]))')
minio_path=${local_path/\/local\//\/minio\/}
mpid=$(pgrep -f "tierback mount $W/mnt" | head -1)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user + system ticks
# Medians of RUNS (default 3) alternating cold reads: single runs vary by ±10 % on a shared machine.
locals=(); minios=(); m_ticks=0; g_ticks=0; t_all=0
for _ in $(seq "${RUNS:-3}"); do
    drop; locals+=("$(secs cat "$W/mnt/$local_path")")
    drop; m_a=$(cpu "$mpid"); g_a=$(cpu "$gpid")
    t=$(secs cat "$W/mnt/$minio_path"); minios+=("$t")
    m_b=$(cpu "$mpid"); g_b=$(cpu "$gpid")
    m_ticks=$((m_ticks + m_b - m_a)); g_ticks=$((g_ticks + g_b - g_a)); t_all=$(python3 -c "print($t_all + $t)")
done
t_local=$(median "${locals[@]}"); t_minio=$(median "${minios[@]}")
tick=$(getconf CLK_TCK)
echo "during the S3 reads: tierback mount used $(python3 -c "print(round($m_ticks / $tick / $t_all * 100))") % CPU, garage $(python3 -c "print(round($g_ticks / $tick / $t_all * 100))") % (of 200 % on 2 cores)"
cmp "$W/mnt/$minio_path" "$W/dump.sql"
# Random 4 KiB reads of each copy, and the bytes loopback carried for the S3 ones.
lo_bytes() { awk '$1 == "lo:" {print $2}' /proc/net/dev; }
drop; rand_local=$(randread "$W/mnt/$local_path" "$raw_size")
drop; lo_a=$(lo_bytes)
rand_minio=$(randread "$W/mnt/$minio_path" "$raw_size")
lo_b=$(lo_bytes)
echo "random 4 KiB p50 through the mount: local $rand_local ms   minio (S3) $rand_minio ms ($(( (lo_b - lo_a) / 300 / 1024 )) KiB per read over loopback, Garage's own traffic included)"
umount "$W/mnt"

python3 - "$raw_size" "$stored" "$t_sync" "$t_rclone" "$t_s3cmd" "$t_local" "$t_minio" <<'PY'
import sys
raw, stored = map(int, sys.argv[1:3])
t_sync, t_rclone, t_s3cmd, t_local, t_minio = map(float, sys.argv[3:8])
print(f"dump {raw / 2**20:.0f} MiB, stored {stored / 2**20:.0f} MiB; Garage single node on loopback")
print(f"upload of the stored file:  tierback sync {stored / 1e6 / t_sync:6.1f} MB/s (verified)   rclone copyto {stored / 1e6 / t_rclone:6.1f} MB/s"
      + (f"   s3cmd put {stored / 1e6 / t_s3cmd:6.1f} MB/s" if t_s3cmd else ""))
print(f"  sync / rclone throughput {t_rclone / t_sync:.2f}" + (f", sync / s3cmd {t_s3cmd / t_sync:.2f}" if t_s3cmd else ""))
print(f"cold sequential read through the mount: local {raw / 1e6 / t_local:6.0f} MB/s   minio (S3) {raw / 1e6 / t_minio:6.0f} MB/s")
r = t_local / t_minio
print(f"  S3 / local throughput {r:.2f}  goal >= 0.85  {'PASS' if r >= 0.85 else 'FAIL'}")
PY
