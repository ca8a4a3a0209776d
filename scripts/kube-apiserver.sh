#!/usr/bin/env bash
# Builds a real kube-apiserver (v1.20.2) from Debian's `kubernetes` source package and caches it
# outside the repository (the build takes ~11 minutes cold). Prints the binary's path.
# Debian bookworm ships the kubernetes source with its Go modules vendored, so it builds offline.
set -euo pipefail
CACHE=${WEFT_CACHE:-/var/cache/weft}
BIN=$CACHE/kube-apiserver
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

src_list=/etc/apt/sources.list.d/weft-deb-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  # Same archive, suite and key as the machine's own Debian entry, for source packages.
  awk 'BEGIN{RS="";ORS="\n\n"} /debian-archive-keyring/ && !/security/ {sub(/Types: deb/,"Types: deb-src"); print}' \
    /etc/apt/sources.list.d/debian.sources >"$src_list"
  apt-get update -qq >&2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends golang-go rsync dpkg-dev make >&2
work=$CACHE/build
rm -rf "$work"; mkdir -p "$work"
(cd "$work" && apt-get source -qq kubernetes >&2)
tree=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
(cd "$tree" && GOFLAGS=-mod=vendor make WHAT=cmd/kube-apiserver >&2)
install -m 0755 "$tree/_output/bin/kube-apiserver" "$BIN"
rm -rf "$work"
echo "$BIN"
