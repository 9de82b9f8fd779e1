#!/usr/bin/env bash
# Upload of one ~500 MiB file to a single-node Garage on loopback: tierback's S3Store (multipart,
# 4 parts in flight, SHA-256 checksums verified by the server and by HEAD) against
# `rclone copyto` and `s3cmd put`. Prints MB/s and ratios.
#   bash bench/s3.sh            (SIZE_MIB=500 RUNS=3 PROFILE=release by default)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-500}
RUNS=${RUNS:-3}
PROFILE=${PROFILE:-release}
. bench/lib.sh
for t in rclone s3cmd; do command -v $t >/dev/null || { echo "$t missing: run scripts/install-deps.sh" >&2; exit 1; }; done

flag=(); [ "$PROFILE" = release ] && flag=(--release)
cargo build -q "${flag[@]}" -p tierback-engine --example s3_put
PUT=target/$PROFILE/examples/s3_put

work=$(mktemp -d /tmp/tierback-bench-s3.XXXXXX)
cleanup() { [ -n "${gpid:-}" ] && kill "$gpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
start_garage "$work"
export S3_ACCESS_KEY=$AK S3_SECRET_KEY=$SK

head -c $((SIZE_MIB << 20)) /dev/urandom > "$work/file"
cat "$work/file" > /dev/null   # page cache warm for everyone

# rclone: remote from the environment only (no config file, no secret on argv).
export RCLONE_CONFIG_G_TYPE=s3 RCLONE_CONFIG_G_PROVIDER=Other RCLONE_CONFIG_G_ENDPOINT=$EP \
    RCLONE_CONFIG_G_REGION=garage RCLONE_CONFIG_G_ACCESS_KEY_ID=$S3_ACCESS_KEY \
    RCLONE_CONFIG_G_SECRET_ACCESS_KEY=$S3_SECRET_KEY RCLONE_CONFIG_G_FORCE_PATH_STYLE=true
# s3cmd: config file in the temp dir (mode 600), removed on exit.
cat > "$work/s3cfg" <<EOT
[default]
access_key = $S3_ACCESS_KEY
secret_key = $S3_SECRET_KEY
host_base = 127.0.0.1:$S3P
host_bucket = 127.0.0.1:$S3P
bucket_location = garage
use_https = False
signature_v2 = False
EOT
chmod 600 "$work/s3cfg"

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$work/err" || { echo "failed: $*" >&2; cat "$work/err" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
best() { sort -g | head -1; }
t_tb=$(for i in $(seq "$RUNS"); do "$PUT" "$EP" bench garage "$work/file" "tb/$i" | cut -d' ' -f1; done | best)
# rclone 1.60 fails with "LoadCustomCABundleError" when AWS_CA_BUNDLE is set; plain http here.
t_rc=$(for i in $(seq "$RUNS"); do secs env -u AWS_CA_BUNDLE rclone copyto "$work/file" "g:bench/rc/$i" --s3-upload-concurrency 4 --s3-chunk-size 16M; done | best)
t_s3=$(for i in $(seq "$RUNS"); do secs s3cmd -c "$work/s3cfg" put "$work/file" "s3://bench/s3cmd/$i" --multipart-chunk-size-mb=16; done | best)
mbs() { echo "scale=1; $SIZE_MIB * 1.048576 / $1" | bc -l; }
printf 'upload of %d MiB to Garage (single node, loopback), best of %d:\n' "$SIZE_MIB" "$RUNS"
printf '  tierback S3Store  %6.2f s  %7s MB/s  (verified: server-checked SHA-256 per part + HEAD)\n' "$t_tb" "$(mbs "$t_tb")"
printf '  rclone copyto     %6.2f s  %7s MB/s\n' "$t_rc" "$(mbs "$t_rc")"
printf '  s3cmd put         %6.2f s  %7s MB/s\n' "$t_s3" "$(mbs "$t_s3")"
printf '  ratio tierback/rclone %.2f, tierback/s3cmd %.2f (throughput; >1 = tierback faster)\n' \
    "$(echo "$t_rc / $t_tb" | bc -l)" "$(echo "$t_s3 / $t_tb" | bc -l)"
