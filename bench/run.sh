#!/usr/bin/env bash
# `make bench`: every benchmark, each printing ratios measured side by side in one run.
set -euo pipefail
cd "$(dirname "$0")"
for b in backup.sh mount.sh tiers.sh find.sh s3.sh rclone.sh restic.sh; do
    if [ -f "$b" ]; then
        echo "### bench/$b"
        bash "$b"
        echo
    fi
done
