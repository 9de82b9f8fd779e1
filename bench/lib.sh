# shellcheck shell=bash
# Shared by the bench scripts (`. bench/lib.sh` from the repository root): timing, dropping the
# page cache, medians, and a single-node Garage on loopback.

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
# median X... → the middle value
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# randread FILE SIZE → p50 in ms of 300 random 4 KiB preads of FILE (SIZE bytes), the same
# offsets every run, with read-ahead off (POSIX_FADV_RANDOM)
randread() {
    python3 - "$1" "$2" <<'PY'
import os, random, sys, time
path, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
offs = [rng.randrange(0, size - 4096) for _ in range(300)]
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
lat = []
for o in offs:
    t = time.perf_counter(); os.pread(fd, 4096, o); lat.append(time.perf_counter() - t)
lat.sort()
print("%.3f" % (lat[len(lat) // 2] * 1000))
PY
}

# start_garage DIR [EXTRA_TOML]: a single-node Garage under DIR with the bucket "bench", ready
# for requests. Sets GARAGE, gpid, S3P, EP, AK, SK; the caller kills $gpid when done.
start_garage() {
    local dir=$1 extra=${2:-} rpcp admp
    GARAGE=${GARAGE_BIN:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
    [ -x "$GARAGE" ] || { echo "garage missing: run scripts/install-deps.sh" >&2; exit 1; }
    S3P=$(port); rpcp=$(port); admp=$(port)
    cat > "$dir/garage.toml" <<EOT
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
$extra
rpc_bind_addr = "127.0.0.1:$rpcp"
rpc_public_addr = "127.0.0.1:$rpcp"
rpc_secret = "$(hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3P"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admp"
EOT
    AK="GK$(hex 12)"; SK="$(hex 32)"
    GARAGE_DEFAULT_ACCESS_KEY=$AK GARAGE_DEFAULT_SECRET_KEY=$SK GARAGE_DEFAULT_BUCKET=bench \
        RUST_LOG=garage=warn "$GARAGE" -c "$dir/garage.toml" server --single-node --default-bucket > "$dir/garage.log" 2>&1 &
    # shellcheck disable=SC2034  # for the caller, as EP below
    gpid=$!
    for _ in $(seq 100); do "$GARAGE" -c "$dir/garage.toml" bucket info bench >/dev/null 2>&1 && break; sleep 0.2; done
    # shellcheck disable=SC2034
    EP=http://127.0.0.1:$S3P
}
