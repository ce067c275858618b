#!/usr/bin/env bash
# First cross-node comparison: a pod on node A to a pod on node B over one underlay bridge,
# with three engines alternating in one run, REPS repetitions each, medians:
#   vswitch-vxlan   two vswitchd nodes, VXLAN tunnels
#   vswitch-ipip    two vswitchd nodes, IPIP tunnels
#   kernel-flannel  two nodes wired as flanneld wires them (flannel.1 + cni0)
# Figures: 64-byte UDP delivered pps (iperf3 -u -l 18 -b 0, receiver side) and TCP Gbit/s.
# Not a test: it asserts nothing. Usage: sudo perf/cross.sh [REPS] [SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
REPS=${1:-3} SECS=${2:-5}
ensure_packages
cargo build --locked --release -q -p vswitchd -p ctl
BIN=$PWD/target/release
P="vx$$" DIR=$(mktemp -d /tmp/vswitch-cross.XXXXXX)
NSS=("$P-ul" "$P-n1" "$P-n2" "$P-a" "$P-b")
DAEMONS=()
stop_daemons() { for pid in "${DAEMONS[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done; DAEMONS=(); }
drop_ns() { for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done; }
cleanup() { stop_daemons; drop_ns; rm -rf "$DIR"; }
trap cleanup EXIT
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ctl() { local n=$1; shift; "$BIN/vswitchctl" --socket "$DIR/n$n.sock" "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

underlay() {
  drop_ns
  for ns in "${NSS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip -n "$P-ul" link add br0 type bridge && ip -n "$P-ul" link set br0 up
  for n in 1 2; do
    ip link add eth0 netns "$P-n$n" type veth peer name "u$n" netns "$P-ul"
    ip -n "$P-ul" link set "u$n" master br0 up
    ip -n "$P-n$n" addr add "192.168.77.$n/24" dev eth0 && ip -n "$P-n$n" link set eth0 up
    in_ns "$P-n$n" ethtool -K eth0 tx off >/dev/null
  done
}

setup_vswitch() { # $1 = vxlan | ipip
  underlay
  for n in 1 2; do
    sed -e "s|/run/vswitch/vswitch.sock|$DIR/n$n.sock|" -e "s|/var/lib/vswitch|$DIR/state$n-$RANDOM|" \
        -e "s|10.244.1.0/24|10.244.$n.0/24|" -e "s|192.168.77.1|192.168.77.$n|" \
        -e "s|^cpus = \[1\]|cpus = [$((n - 1))]|" config.toml > "$DIR/n$n.toml"
    ip netns exec "$P-n$n" "$BIN/vswitchd" --config "$DIR/n$n.toml" 2>>"$DIR/log" &  # $! = the daemon
    DAEMONS+=($!)
    for _ in $(seq 50); do ctl "$n" node >/dev/null 2>&1 && break; sleep 0.2; done
  done
  ctl 1 port add --netns "$P-a" --id a --ip 10.244.1.2/24 >/dev/null
  ctl 2 port add --netns "$P-b" --id b --ip 10.244.2.2/24 >/dev/null
  local m1 m2 x1="" x2=""
  m1=$(ctl 1 --json node | python3 -c 'import json,sys; print(json.load(sys.stdin)["vtep_mac"])')
  m2=$(ctl 2 --json node | python3 -c 'import json,sys; print(json.load(sys.stdin)["vtep_mac"])')
  [[ $1 == vxlan ]] && x1="--vtep-mac $m2" x2="--vtep-mac $m1"
  ctl 1 tunnel add --name n2 --kind "$1" --remote 192.168.77.2 --subnet 10.244.2.0/24 $x1 >/dev/null
  ctl 2 tunnel add --name n1 --kind "$1" --remote 192.168.77.1 --subnet 10.244.1.0/24 $x2 >/dev/null
  sleep 2
}
setup_vswitch-vxlan() { setup_vswitch vxlan; }
setup_vswitch-ipip() { setup_vswitch ipip; }

setup_kernel-flannel() {
  underlay
  for n in 1 2; do
    local K=(ip -n "$P-n$n") pod=$([[ $n == 1 ]] && echo "$P-a" || echo "$P-b") peer=$((3 - n))
    "${K[@]}" link add flannel.1 type vxlan id 1 dstport 8472 nolearning local "192.168.77.$n" dev eth0
    "${K[@]}" link set flannel.1 address "0e:00:00:77:0$n:0$n" mtu 1450 up
    "${K[@]}" addr add "10.244.$n.0/32" dev flannel.1
    "${K[@]}" link add cni0 type bridge && "${K[@]}" link set cni0 mtu 1450 up
    "${K[@]}" addr add "10.244.$n.1/24" dev cni0
    in_ns "$P-n$n" sysctl -qw net.ipv4.ip_forward=1
    "${K[@]}" link add vp type veth peer name kp0
    "${K[@]}" link set kp0 netns "$pod" && "${K[@]}" link set vp master cni0 mtu 1450 up
    ip -n "$pod" link set kp0 name eth0 && ip -n "$pod" link set eth0 mtu 1450 up
    ip -n "$pod" addr add "10.244.$n.2/24" dev eth0 && ip -n "$pod" route add default via "10.244.$n.1"
    "${K[@]}" route add "10.244.$peer.0/24" via "10.244.$peer.0" dev flannel.1 onlink
    "${K[@]}" neigh add "10.244.$peer.0" lladdr "0e:00:00:77:0$peer:0$peer" dev flannel.1 nud permanent
    in_ns "$P-n$n" bridge fdb append "0e:00:00:77:0$peer:0$peer" dev flannel.1 dst "192.168.77.$peer"
  done
}

teardown() { stop_daemons; drop_ns; }

udp_pps() {
  in_ns "$P-b" iperf3 -s -1 >/dev/null 2>&1 & sleep 0.3
  in_ns "$P-a" iperf3 -c 10.244.2.2 -u -l 18 -b 0 -t "$SECS" -J 2>/dev/null |
    python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum"]; print((e["packets"]-e["lost_packets"])/e["seconds"], e["packets"]/e["seconds"])'
}
tcp_gbps() {
  in_ns "$P-b" iperf3 -s -1 >/dev/null 2>&1 & sleep 0.3
  in_ns "$P-a" iperf3 -c 10.244.2.2 -t "$SECS" -J 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
}

ENGINES=(vswitch-vxlan vswitch-ipip kernel-flannel)
declare -A UDP TCP OFFERED
for rep in $(seq "$REPS"); do
  for engine in "${ENGINES[@]}"; do
    "setup_$engine"
    in_ns "$P-a" ping -c 2 -i 0.2 -W 1 10.244.2.2 >/dev/null
    read -r pps offered < <(udp_pps)
    gbps=$(tcp_gbps)
    UDP[$engine]+="$pps "; OFFERED[$engine]+="$offered "; TCP[$engine]+="$gbps "
    teardown
    printf 'rep %s %-15s: 64 B UDP delivered %.0f pps of %.0f offered, TCP %.2f Gbit/s\n' \
      "$rep" "$engine" "$pps" "$offered" "$gbps"
  done
done
echo
echo "| engine | 64 B UDP delivered pps (median) | offered pps | TCP Gbit/s (median) |"
echo "|---|---|---|---|"
for engine in "${ENGINES[@]}"; do
  printf '| %s | %.0f | %.0f | %.2f |\n' "$engine" \
    "$(tr ' ' '\n' <<<"${UDP[$engine]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${OFFERED[$engine]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${TCP[$engine]}" | grep . | median)"
done
