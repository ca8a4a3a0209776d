#!/bin/bash
# Where the CPU goes per packet: routed veth pods (the hand-wired twin of bench/throughput.ts)
# with TSO/GSO off, without and with a ct-first nft forward chain, profiled with perf
# (software cpu-clock sampling: no PMU on these VMs). Prints Gbit/s, the reference chain's
# counters, conntrack's entries, and the netfilter/conntrack symbols' share of the samples taken
# in iperf3 and ksoftirqd (where the forwarding softirq work is charged on this kernel).
# Everything lives in tpp-* namespaces, removed on exit. As root: bash bench/throughput-profile.sh
set -e
command -v perf >/dev/null || apt-get install -y linux-perf
OUT=$(mktemp -d /tmp/tpp-profile.XXXX)
P=tpp
x() { ip netns exec $P-$1 "${@:2}"; }
cleanup() { for n in ul A B a1 b1; do ip netns del $P-$n 2>/dev/null || true; done; }
trap cleanup EXIT
for n in ul A B a1 b1; do ip netns add $P-$n; x $n ip link set lo up; done
x ul ip link add br0 type bridge; x ul ip link set br0 up
declare -A U=([A]=198.18.0.1 [B]=198.18.0.2)
for n in A B; do
  x ul ip link add p$n type veth peer name eth0 netns $P-$n; x ul ip link set p$n master br0 up
  x $n ip addr add ${U[$n]}/24 dev eth0; x $n ip link set eth0 up
  x $n sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
done
x A ip route add 198.19.2.0/24 via ${U[B]}; x B ip route add 198.19.1.0/24 via ${U[A]}
x A ip route add default via ${U[B]}; x B ip route add default via ${U[A]}
for p in a1:A:198.19.1.10 b1:B:198.19.2.10; do IFS=: read pn nn pip <<<"$p"
  x $nn ip link add lxc$pn type veth peer name eth0 netns $P-$pn; x $nn ip link set lxc$pn up
  x $nn sysctl -qw net.ipv4.conf.lxc$pn.proxy_arp=1 net.ipv4.neigh.lxc$pn.proxy_delay=0
  x $nn ip route add $pip/32 dev lxc$pn
  x $pn ip addr add $pip/32 dev eth0; x $pn ip link set eth0 up
  x $pn ip route add 169.254.1.1 dev eth0 scope link; x $pn ip route add default via 169.254.1.1 dev eth0
done
for n in ul A B a1 b1; do for d in $(x $n ip -j link | jq -r '.[].ifname' | grep -v '^lo$'); do x $n ethtool -K $d tso off gso off 2>/dev/null || true; done; done
NFT='table inet tpref {
  set allowed { type ipv4_addr . inet_service; flags interval; elements = { 198.19.1.10 . 5201-5399 } }
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related counter accept
    ct state invalid drop
    ip daddr . tcp dport @allowed counter accept
    counter drop
  }
}'
for mode in ${MODES:-routed routed+nft}; do
  [ $mode = routed+nft ] && for n in A B; do echo "$NFT" | x $n nft -f -; done
  x a1 iperf3 -s -1 -p 5201 >/dev/null & sp=$!
  sleep 0.5
  x b1 iperf3 -c 198.19.1.10 -p 5201 -t 14 -J > $OUT/prof-$mode.json & cp=$!
  sleep 3
  perf record -q -a -g -F 499 -e cpu-clock -o $OUT/perf-$mode.data -- sleep 8 2>/dev/null
  wait $cp; wait $sp || true
  echo "$mode: $(jq -r '.end.sum_received.bits_per_second/1e9' $OUT/prof-$mode.json) Gbit/s, load $(cut -d' ' -f1 /proc/loadavg)"
  [ $mode = routed+nft ] && { x A nft list table inet tpref | grep counter; x A conntrack -S | head -2; x A conntrack -C; }
  
done
for mode in ${MODES:-routed routed+nft}; do
  all=$(perf report -i $OUT/perf-$mode.data --no-children --sort comm --stdio 2>/dev/null | grep -E 'iperf3|ksoftirqd' | awk '{gsub("%","",$1); s+=$1} END {print s}')
  nf=$(perf report -i $OUT/perf-$mode.data --no-children --comms iperf3,ksoftirqd/0,ksoftirqd/1 --sort sym --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | grep -E 'nf_|nft_|conntrack' | awk '{gsub("%","",$1); s+=$1} END {print s}')
  echo "$mode: iperf3+ksoftirqd ${all}% of all samples, netfilter/conntrack/br_netfilter symbols ${nf}% of all samples"
  perf report -i $OUT/perf-$mode.data --no-children --comms iperf3,ksoftirqd/0,ksoftirqd/1 --sort sym --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | grep -E 'nf_|nft_|conntrack' | head -12
done
