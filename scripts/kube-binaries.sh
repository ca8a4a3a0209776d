#!/usr/bin/env bash
# Builds the Kubernetes 1.20.2 binaries weft's tests drive (kube-apiserver, and for real nodes
# kubelet, kube-controller-manager, kube-scheduler) plus the pause container binary, from Debian's
# `kubernetes` source package, and caches them outside the repository ($WEFT_CACHE, default
# /var/cache/weft). Debian ships the source with its Go modules vendored, so it builds offline.
# Only the missing binaries are built, all in one source tree so the shared packages compile once
# (the Go cache lives inside the tree: hack/lib/golang.sh). Cold, on 2 cores: about 25 minutes.
# Usage: kube-binaries.sh [NAME...]   (default: all). Prints the cache directory.
set -euo pipefail
CACHE=${WEFT_CACHE:-/var/cache/weft}
ALL=(kube-apiserver kubelet kube-controller-manager kube-scheduler pause)
want=("$@")
((${#want[@]})) || want=("${ALL[@]}")
for w in "${want[@]}"; do
  case " ${ALL[*]} " in *" $w "*) ;; *) echo "kube-binaries: unknown binary '$w' (one of: ${ALL[*]})" >&2; exit 2 ;; esac
done
# A binary built before a fix to the recipe below is rebuilt: its stamp names the fixes it has.
# reflect2: Debian's tree vendors modern-go/reflect2 1.0.1, whose map iteration crashes (SIGSEGV in
# UnsafeMapType.UnsafeIterate) under Go >= 1.18, which Debian 12 builds with: kube-apiserver died on
# the first custom resource it decoded. reflect2 1.0.2 (Debian's own package) is API-compatible and fixes it.
FIXES="reflect2-1.0.2"
built() { [ -x "$CACHE/$1" ] && { [ "$1" = pause ] || [ "$(cat "$CACHE/$1.fixes" 2>/dev/null)" = "$FIXES" ]; }; }
missing() { local m=(); for w in "${want[@]}"; do built "$w" || m+=("$w"); done; echo "${m[*]}"; }
[ -n "$(missing)" ] || { echo "$CACHE"; exit 0; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
todo=($(missing))
((${#todo[@]})) || { echo "$CACHE"; exit 0; }

if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  # Same archive, suite and key as the machine's own Debian entry, for source packages.
  awk 'BEGIN{RS="";ORS="\n\n"} /debian-archive-keyring/ && !/security/ {sub(/Types: deb/,"Types: deb-src"); print}' \
    /etc/apt/sources.list.d/debian.sources >/etc/apt/sources.list.d/weft-deb-src.sources
  apt-get update -qq >&2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends golang-go rsync dpkg-dev make gcc libc6-dev \
  golang-github-modern-go-reflect2-dev >&2
work=$CACHE/build
rm -rf "$work"; mkdir -p "$work"
(cd "$work" && apt-get source -qq kubernetes >&2)
tree=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
what=()
for w in "${todo[@]}"; do [ "$w" = pause ] || what+=("cmd/$w"); done
r2=/usr/share/gocode/src/github.com/modern-go/reflect2 v2=$tree/vendor/github.com/modern-go/reflect2
grep -qE '^# github.com/modern-go/reflect2 v1\.0\.[01]( |$)' "$tree/vendor/modules.txt" && [ -f "$r2/go_above_118.go" ] || {
  echo "kube-binaries: expected the tree to vendor reflect2 1.0.0/1.0.1 and $r2 to hold 1.0.2" >&2
  exit 1
}
rm -rf "$v2" && mkdir -p "$v2" && cp "$r2"/*.go "$r2"/*.s "$v2/"
if ((${#what[@]})); then
  (cd "$tree" && GOFLAGS=-mod=vendor make WHAT="${what[*]}" >&2)
  for w in "${todo[@]}"; do
    [ "$w" = pause ] && continue
    # By rename, so a test starting the binary meanwhile never runs a half-written file.
    install -m 0755 "$tree/_output/bin/$w" "$CACHE/$w.tmp"
    mv -f "$CACHE/$w.tmp" "$CACHE/$w"
    echo "$FIXES" >"$CACHE/$w.fixes"
  done
fi
case " ${todo[*]} " in *" pause "*)
  # The pod sandbox's pause process, from the same tree (build/pause): static, so it needs no libc in its image.
  gcc -Os -Wall -Werror -static -DVERSION=v3.4-weft -o "$CACHE/pause.tmp" "$tree/build/pause/linux/pause.c"
  mv -f "$CACHE/pause.tmp" "$CACHE/pause" ;;
esac
rm -rf "$work"
echo "$CACHE"
