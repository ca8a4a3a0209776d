#!/usr/bin/env bash
# Builds (once) and prints the path of the cached kube-apiserver 1.20.2: see kube-binaries.sh.
set -euo pipefail
dir=$(bash "$(dirname "$0")/kube-binaries.sh" kube-apiserver)
echo "$dir/kube-apiserver"
