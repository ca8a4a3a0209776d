#!/usr/bin/env bash
# The whole test suite: unit tests, kernel integration tests in namespaces the tests create,
# and the end-to-end suites. Installs what it needs first. Must run as root (network namespaces).
# Optional arguments: test files (dist/...test.js) to run instead of all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The linter and the formatter first: typescript-eslint, the line length and the layering
# (eslint.config.js), and prettier's check (.prettierrc); an upward import or an unformatted file
# fails the run before any test starts (`npx prettier --write .` formats).
npm run --silent lint
npm run --silent format:check
if [ "$(id -u)" != 0 ]; then echo "test: must run as root (tests create network namespaces)" >&2; exit 2; fi
unset NODE_EXTRA_CA_CERTS
# Real Kubernetes 1.20.2 binaries (kube-apiserver for the Kubernetes store and lab tests; kubelet,
# kube-controller-manager, kube-scheduler and pause for the real-node tests): built once from
# Debian's source package and cached outside the repository (~25 minutes the first time on a fresh
# machine). Every component the suite drives must be here: a missing one is a failed run, not skipped tests.
if ! bash scripts/kube-binaries.sh >/dev/null; then
  echo "test: FAILED: could not build the Kubernetes binaries (bash scripts/kube-binaries.sh); the Kubernetes tests need them" >&2
  exit 1
fi
# The container images (weft's, the lab pod's, busybox, pause) as OCI archives, built offline from
# this checkout; the real-node lab imports them into every node's containerd.
if ! bash scripts/image.sh --prune >/dev/null; then
  echo "test: FAILED: could not build the container images (bash scripts/image.sh)" >&2
  exit 1
fi
for need in "${WEFT_CACHE:-/var/cache/weft}/kubectl" /usr/bin/etcd /usr/bin/podman /usr/bin/socat /usr/bin/containerd /usr/bin/ctr; do
  if [ ! -x "$need" ]; then echo "test: FAILED: $need is missing (bash scripts/setup.sh installs it)" >&2; exit 1; fi
done
if (($#)); then files=("$@"); else mapfile -t files < <(find dist -name '*.test.js' | sort); fi
# One file at a time: the kernel suites each make their own namespaces and agents; running them
# side by side on 2 cores only makes timings noisy.
# Readable progress on stdout; a TAP copy for the closing count line.
tap=$(mktemp /tmp/weft-test-XXXXXX.tap)
trap 'rm -f "$tap"' EXIT
set +e
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" "${files[@]}"
rc=$?
set -e
count() { grep -E "^# $1 [0-9]+$" "$tap" | tail -1 | awk '{print $3}'; }
# A skipped test is a failed run unless scripts/skip-allow.txt lists it (by the name on its TAP
# line) with the reason it cannot run on this machine. Node's TAP: "ok 3 - NAME # SKIP REASON".
allow=scripts/skip-allow.txt
unlisted=()
while IFS=$'\t' read -r name reason; do
  [ -n "$name" ] || continue
  if ! N=$name awk '/^#/ { next } index($0, " # ") && substr($0, 1, index($0, " # ") - 1) == ENVIRON["N"] { found = 1 } END { exit !found }' "$allow"; then
    unlisted+=("$name (skipped: ${reason:-no reason given})")
  fi
done < <(sed -nE 's/^[[:space:]]*(not )?ok [0-9]+ - (.*) # (SKIP|TODO)( (.*))?$/\2\t\5/p' "$tap")
echo "weft: $(count pass) passed, $(count fail) failed, $(count skipped) skipped"
if ((${#unlisted[@]})); then
  echo "weft: FAILED: ${#unlisted[@]} skipped test(s) not in $allow:" >&2
  printf '  %s\n' "${unlisted[@]}" >&2
  ((rc != 0)) || rc=1
fi
exit $rc
