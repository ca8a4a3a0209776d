#!/usr/bin/env bash
# Installs what weft needs on a fresh Debian 12 machine (run as root), then builds weft.
# Idempotent and quick when everything is already in place: the README's commands call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages weft and its tests use (the kernel tools, real CNI clients and peers).
PKGS=(gcc libc6-dev iproute2 nftables iptables conntrack util-linux procps podman runc containernetworking-plugins
  etcd-server etcd-client iperf3 busybox-static jq socat tcpdump ethtool openssl ca-certificates)
if ! command -v node >/dev/null 2>&1; then PKGS+=(nodejs npm); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies, exactly as locked.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s <(jq -S .packages package-lock.json 2>/dev/null | sed 1d) <(jq -S '.packages' node_modules/.package-lock.json 2>/dev/null | sed 1d); then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi

# Build when any source is newer than the last build.
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src scripts package.json tsconfig.json -newer "$stamp" -print -quit)" ]; then
  echo "setup: building"
  npm run --silent build
  touch "$stamp"
fi
