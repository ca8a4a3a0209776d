#!/usr/bin/env bash
# Runs weft's benchmarks (never part of the tests): `bash bench/run.sh [NAME ...]`, NAME one of
# the bench/*.ts files without extension (default: all). Each writes its section of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc -p tsconfig.bench.json
unset NODE_EXTRA_CA_CERTS
names=("$@")
if ((${#names[@]} == 0)); then
  mapfile -t names < <(ls bench/*.ts | xargs -n1 basename | sed 's/\.ts$//' | grep -v '^lib$')
fi
for n in "${names[@]}"; do
  echo "== bench: $n"
  node "dist-bench/bench/$n.js"
done
