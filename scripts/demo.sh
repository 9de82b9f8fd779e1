#!/usr/bin/env bash
# `make demo`: the main job on an embedded default. Writes a config under ./demo/ with a local
# tier, a `command` source producing a generated SQL dump and a `files` source, takes backups,
# lists and verifies them, and restores one with `tierback cat` and `cmp`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tb="$root/target/release/tierback"
gen="$root/target/release/examples/gen_sql"
demo="$root/demo"

rm -rf "$demo"
mkdir -p "$demo"
cat > "$demo/tierback.toml" <<TOML
# Demo configuration written by scripts/demo.sh.
[catalog]
path = "$demo/catalog.db"

[defaults]
compression_level = 9
block_size = "1MiB"

[tiers.local]
type = "local"
path = "$demo/tiers/local"
retention = { keep_hourly = 168, keep_daily = 30, keep_weekly = 12 }

[services.shop]
driver = "command"
schedule = ["0 * * * *"]
command = ["$gen", "64MiB", "2026"]
artifact = "shop_main"
extension = "sql"

[services.configs]
driver = "files"
schedule = ["0 6 * * *"]
paths = ["$root/docs", "$root/Makefile"]
TOML
export TIERBACK_CONFIG="$demo/tierback.toml"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "tierback init (keeps the demo config, creates the tier and catalog)"
"$tb" init
step "tierback backup --all"
"$tb" backup --all
step "tierback list"
"$tb" list
step "tierback verify --all (every copy, every block)"
"$tb" verify --all
step "the stored file is an ordinary .gz: gzip -t and sha256sum -c"
gz=$(find "$demo/tiers/local/shop" -name '*.sql.gz')
gzip -t "$gz" && echo "gzip -t: OK"
(cd "$(dirname "$gz")" && sha256sum -c ./*.sha256)
step "restore with tierback cat and compare with the source"
path=$("$tb" list --json | python3 -c 'import json,sys; a=[x for x in json.load(sys.stdin) if x["service"]=="shop"][0]; print("shop/local/%s/%s" % (a["key"].split("/")[1], a["file"]))')
echo "tierback cat $path > $demo/restored.sql"
"$tb" cat "$path" > "$demo/restored.sql"
"$gen" 64MiB 2026 | cmp - "$demo/restored.sql"
echo "restored $(stat -c %s "$demo/restored.sql") bytes, identical to the source"
step "tierback status"
"$tb" status

step "tierback mount: restore the same file with cp through the read-only mount"
mnt="$demo/mnt"
mkdir -p "$mnt"
"$tb" mount "$mnt" --daemon
# The daemon exits once the mount is gone; make sure it is gone even if a step fails.
trap 'umount -l "$mnt" 2>/dev/null || true' EXIT
find "$mnt" -maxdepth 3 | sort
cp "$mnt/$path" "$demo/restored-from-mount.sql"
"$gen" 64MiB 2026 | cmp - "$demo/restored-from-mount.sql"
(cd "$(dirname "$mnt/$path")" && sha256sum -c ./*.sha256)
umount "$mnt"
echo "cp through the mount: identical to the source; unmounted"
echo
echo "demo OK — everything is under $demo"
