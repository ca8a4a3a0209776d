#!/usr/bin/env bash
# Builds weft's container images offline as OCI archives (ctr images import, podman load) in
# /var/cache/weft/images (see src/image/build.ts); `--list` prints the JSON list the lab reads.
# setup's own output goes to stderr so that stdout stays the list.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec node dist/image/main.js "$@"
