#!/usr/bin/env bash
# weft on one host, end to end: a "host" network namespace runs the agent, `weft install-cni`
# installs the plugin, and two pods are wired by the real plugin exactly as a container runtime
# does it (CNI_* environment, network config on stdin). Everything lives in namespaces this script
# creates and is removed on exit, also on failure or Ctrl-C. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" != 0 ]; then echo "demo: must run as root (it creates network namespaces)" >&2; exit 2; fi
unset NODE_EXTRA_CA_CERTS

tag=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
HOST=wt-demo-$tag-host
PODS=(wt-demo-$tag-a wt-demo-$tag-b)
WORK=$(mktemp -d /tmp/weft-demo-XXXXXX)
SOCK=$WORK/weft.sock
POD_CIDR=10.244.0.0/24
AGENT_PID=
added=()

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }

cleanup() {
  local rc=$?
  set +e
  say "cleaning up"
  for id in "${added[@]}"; do cni DEL "$id" >/dev/null 2>&1; done
  if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; fi
  for ns in "${PODS[@]}" "$HOST"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$WORK"
  echo "removed the namespaces, the agent and $WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One CNI call as a runtime makes it, from the host namespace: cni ADD|DEL POD-NETNS.
cni() {
  local cmd=$1 pod=$2
  jq -c '{cniVersion, name} + .plugins[0]' "$WORK/net.d/10-weft.conflist" |
    in_ns "$HOST" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND="$cmd" CNI_CONTAINERID="$pod" \
      CNI_NETNS="/run/netns/$pod" CNI_IFNAME=eth0 CNI_PATH="$WORK/bin:/usr/lib/cni" "$WORK/bin/weft"
}

say "namespaces: host $HOST, pods ${PODS[*]}"
for ns in "$HOST" "${PODS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

say "weft agent in $HOST (pod CIDR $POD_CIDR)"
# nsenter execs node in place, so $! is the agent's own PID.
nsenter --net="/run/netns/$HOST" -- node dist/cli/main.js agent --node demo --store local --state-dir "$WORK/state" \
  --socket "$SOCK" --pod-cidr "$POD_CIDR" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do
  bin/weft ipam check --socket "$SOCK" >/dev/null 2>&1 && break
  kill -0 "$AGENT_PID" 2>/dev/null || { echo "agent exited:"; tail -5 "$WORK/agent.log"; exit 1; }
  sleep 0.1
done
echo "agent pid $AGENT_PID, socket $SOCK"

say "weft install-cni"
bin/weft install-cni --bin-dir "$WORK/bin" --conf-dir "$WORK/net.d" --socket "$SOCK"
jq -c . "$WORK/net.d/10-weft.conflist"

say "CNI ADD for both pods (the real plugin, as a runtime calls it)"
declare -A ip
for pod in "${PODS[@]}"; do
  result=$(cni ADD "$pod")
  added+=("$pod")
  ip[$pod]=$(jq -r '.ips[0].address' <<<"$result")
  echo "$pod: ${ip[$pod]}"
done

for pod in "${PODS[@]}"; do
  say "ip -br addr / ip route inside $pod"
  in_ns "$pod" ip -br addr
  in_ns "$pod" ip route
done

a=${PODS[0]} b=${PODS[1]}
say "ping from $a to $b (${ip[$b]%/*})"
in_ns "$a" busybox ping -c 3 -W 2 "${ip[$b]%/*}"

say "weft ipam check"
bin/weft ipam check --socket "$SOCK"

say "CNI DEL for both pods"
for pod in "${PODS[@]}"; do cni DEL "$pod" && echo "$pod: deleted"; done
added=()
bin/weft ipam check --socket "$SOCK"
