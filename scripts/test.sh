#!/usr/bin/env bash
# The whole test suite: unit tests, kernel integration tests in namespaces the tests create,
# and the end-to-end suites. Installs what it needs first. Must run as root (network namespaces).
# Optional arguments: test files (dist/...test.js) to run instead of all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The linter first: typescript-eslint, the line length and the layering (eslint.config.js); an
# upward import fails the run before any test starts.
npm run --silent lint
if [ "$(id -u)" != 0 ]; then echo "test: must run as root (tests create network namespaces)" >&2; exit 2; fi
unset NODE_EXTRA_CA_CERTS
# A real kube-apiserver for the Kubernetes store and lab tests: built once from Debian's source
# package and cached outside the repository (~11 minutes the first time on a fresh machine).
if ! bash scripts/kube-apiserver.sh >/dev/null; then
  echo "test: could not build kube-apiserver; the Kubernetes store tests will be skipped" >&2
fi
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
echo "weft: $(count pass) passed, $(count fail) failed, $(count skipped) skipped"
exit $rc
