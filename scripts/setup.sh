#!/usr/bin/env bash
# Installs what weft needs on a fresh Debian 12 machine (run as root), then builds weft.
# Idempotent and quick when everything is already in place: the README's commands call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages weft and its tests use (the kernel tools, real CNI clients and peers; IPsec runs
# strongSwan's charon with kernel-libipsec, which Debian ships in libcharon-extra-plugins).
PKGS=(gcc libc6-dev iproute2 nftables iptables conntrack util-linux procps podman runc containerd containernetworking-plugins
  etcd-server etcd-client iperf3 busybox-static jq socat tcpdump ethtool openssl ca-certificates bird2 frr
  wireguard-go wireguard-tools strongswan-charon strongswan-swanctl libcharon-extra-plugins)
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
  # The bgp backend runs its own BIRD in each node namespace; bird2's host-wide service (started
  # by the package under systemd) is not weft's: stop it if this run installed it.
  if [[ " ${missing[*]} " == *" bird2 "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now bird.service >/dev/null 2>&1 || true
  fi
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

# A kubectl that matches the lab's kube-apiserver (1.20.2): Debian's kubernetes-client package,
# unpacked into the cache (never installed over a kubectl the machine already has, which may be
# another version or another vendor's wrapper). Tests call it through src/testlib/kubectl.ts.
CACHE=${WEFT_CACHE:-/var/cache/weft}
KUBECTL=$CACHE/kubectl
if [ ! -x "$KUBECTL" ]; then
  echo "setup: unpacking Debian's kubernetes-client (kubectl 1.20.2) into $CACHE"
  mkdir -p "$CACHE"
  kdir=$(mktemp -d "$CACHE/.kubectl-XXXXXX")
  (cd "$kdir" && apt-get download -qq kubernetes-client >/dev/null 2>&1 || { apt-get update -qq && apt-get download -qq kubernetes-client; })
  deb=$(find "$kdir" -maxdepth 1 -name 'kubernetes-client_*.deb' | head -1)
  if [ -z "$deb" ]; then echo "setup: apt-get download kubernetes-client failed" >&2; rm -rf "$kdir"; exit 1; fi
  dpkg-deb -x "$deb" "$kdir/root"
  install -m 0755 "$kdir/root/usr/bin/kubectl" "$KUBECTL.tmp"
  mv -f "$KUBECTL.tmp" "$KUBECTL"
  rm -rf "$kdir"
fi
