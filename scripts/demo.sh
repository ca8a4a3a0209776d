#!/usr/bin/env bash
# The main job: a 3-node virtual cluster on this machine (network namespaces, a lab etcd, one weft
# agent per node, a lab kubelet driving the real CNI plugin), demo pods in two namespaces, and
# the all-pairs connectivity matrix; then a NetworkPolicy and the matrix again. The lab stays up
# for you to explore; `bin/weft lab down` removes all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
weft=bin/weft
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "lab up: 3 nodes, VXLAN backend"
$weft lab up --nodes 3 --backend vxlan

say "apply examples/demo.yaml (namespaces shop and ops, four pods)"
$weft apply -f examples/demo.yaml
for _ in $(seq 1 100); do
  pending=$($weft get pods -A -o json | jq '[.items[] | select(.status.phase != "Running")] | length')
  [ "$pending" = 0 ] && break
  sleep 0.2
done
$weft get pods -A -o wide

say "status"
# Agents publish their pod counts about a second after a change: wait for them (at most ~5 s).
for _ in $(seq 1 25); do
  behind=$($weft status -o json | jq '[.nodes[] | select(.agent != null and .agent.wiredPods != .pods)] | length')
  [ "$behind" = 0 ] && break
  sleep 0.2
done
$weft status

say "connectivity matrix, TCP port 80 (every pod to every pod)"
$weft lab matrix --port 80

say "apply examples/db-policy.yaml: only shop/api may reach shop/db"
$weft apply -f examples/db-policy.yaml
sleep 0.5
$weft lab matrix --port 80 --timeout-ms 500

say "why? weft explain shop/web shop/db --port 80"
$weft explain shop/web shop/db --port 80 || true

cat <<'TXT'

The lab is still up. Things to try:
  bin/weft get pods -A -o wide            bin/weft get nodes -o json
  bin/weft lab probe shop/api shop/db --port 80 -o json
  bin/weft lab matrix --port 53 --protocol UDP
  bin/weft lab exec shop/web -- ip route  bin/weft lab exec n1 -- ip route
  bin/weft policy show --node n1          bin/weft delete netpol db-from-api -n shop
Tear it all down with:
  bin/weft lab down
TXT
