#!/usr/bin/env bash
# The demo: one Kubernetes-style node in network namespaces, switched by vswitchd on AF_XDP.
#   - a node namespace running vswitchd with config.toml (socket/state moved to a temp dir,
#     uplink "eth0" = a veth to an underlay peer namespace)
#   - three pods added with `vswitchctl port add` (what CNI ADD does)
#   - ping between pods, to the gateway, node -> pod; iperf3 TCP pod -> pod; port list; stats
# Everything it creates is removed at exit, even on failure. Usage: sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "system packages"
ensure_packages
step "build"
cargo build --locked --release -q -p vswitchd -p ctl
BIN=$PWD/target/release

P="vdemo$$"
DIR=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
NODE="$P-node" PEER="$P-peer"
PODS=("$P-a" "$P-b" "$P-c")
DAEMON=""
cleanup() {
  if [[ -n "$DAEMON" ]]; then kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true; fi
  for ns in "$NODE" "$PEER" "${PODS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
ctl() { "$BIN/vswitchctl" --socket "$DIR/vswitch.sock" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

step "topology: node $NODE, underlay peer $PEER, pods ${PODS[*]}"
for ns in "$NODE" "$PEER" "${PODS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add eth0 netns "$NODE" type veth peer name eth0 netns "$PEER"
ip -n "$NODE" addr add 192.168.77.1/24 dev eth0 && ip -n "$NODE" link set eth0 up
ip -n "$PEER" addr add 192.168.77.2/24 dev eth0 && ip -n "$PEER" link set eth0 up
sed -e "s|/run/vswitch/vswitch.sock|$DIR/vswitch.sock|" -e "s|/var/lib/vswitch|$DIR/state|" \
  config.toml > "$DIR/config.toml"

step "vswitchd --config config.toml (in $NODE)"
in_ns "$NODE" "$BIN/vswitchd" --config "$DIR/config.toml" 2> "$DIR/vswitchd.log" &
DAEMON=$!
for _ in $(seq 50); do ctl node >/dev/null 2>&1 && break; sleep 0.2; done
ctl node

step "port add (what vswitch-cni ADD does)"
for i in "${!PODS[@]}"; do ctl port add --netns "${PODS[$i]}" --id "pod-$i"; echo; done
ctl port list
IP_B=$(in_ns "${PODS[1]}" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
IP_C=$(in_ns "${PODS[2]}" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)

step "ping: pod a -> pod b ($IP_B), pod a -> pod c ($IP_C), pod a -> gateway, node -> pod c"
in_ns "${PODS[0]}" ping -c 3 -i 0.2 "$IP_B" | tail -2
in_ns "${PODS[0]}" ping -c 3 -i 0.2 "$IP_C" | tail -2
in_ns "${PODS[0]}" ping -c 3 -i 0.2 10.244.1.1 | tail -2
in_ns "$NODE" ping -c 3 -i 0.2 "$IP_C" | tail -2
step "ping with full-MTU frames and DF (pod MTU 1450 = 1500 - VXLAN overhead): pod a -> pod b"
in_ns "${PODS[0]}" ping -M do -s 1422 -c 3 -i 0.2 "$IP_B" | tail -2

step "iperf3 TCP: pod a -> pod b, 3 s"
in_ns "${PODS[1]}" iperf3 -s -1 >/dev/null 2>&1 &
sleep 0.5
in_ns "${PODS[0]}" iperf3 -c "$IP_B" -t 3 | grep -E "sender|receiver"

step "vswitchctl stats"
ctl stats
step "daemon log"
cat "$DIR/vswitchd.log"
