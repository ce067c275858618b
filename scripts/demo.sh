#!/usr/bin/env bash
# The demo: a three-node cluster in network namespaces on one underlay (192.168.77.0/24):
#   node1, node2  vswitchd on AF_XDP (config.toml; socket/state moved to a temp dir), pods
#                 added with `vswitchctl port add` (what CNI ADD does), VXLAN between them
#   node3         a node wired exactly as flanneld wires one: kernel vxlan flannel.1 (VNI 1,
#                 port 8472, nolearning), cni0 bridge, per-peer route + neighbour + FDB entry
# It shows same-node and cross-node pod traffic (ping, DF at the pod MTU, iperf3), the tunnel
# table and the counters, and removes everything it created at exit, even on failure.
# Usage: sudo scripts/demo.sh
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
NSS=("$P-ul" "$P-node1" "$P-node2" "$P-node3" "$P-a" "$P-b" "$P-c" "$P-d" "$P-e")
DAEMONS=()
cleanup() {
  for pid in "${DAEMONS[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ctl() { local n=$1; shift; "$BIN/vswitchctl" --socket "$DIR/node$n.sock" "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
pod_ip() { in_ns "$1" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1; }

step "underlay $P-ul (bridge), nodes 192.168.77.1-3"
for ns in "${NSS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$P-ul" link add br0 type bridge && ip -n "$P-ul" link set br0 up
for n in 1 2 3; do
  ip link add eth0 netns "$P-node$n" type veth peer name "u$n" netns "$P-ul"
  ip -n "$P-ul" link set "u$n" master br0 up
  ip -n "$P-node$n" addr add "192.168.77.$n/24" dev eth0 && ip -n "$P-node$n" link set eth0 up
  in_ns "$P-node$n" ethtool -K eth0 tx off >/dev/null   # a veth "wire" finishes checksums
done

for n in 1 2; do
  step "node$n: vswitchd --config config.toml (pod_cidr 10.244.$n.0/24)"
  sed -e "s|/run/vswitch/vswitch.sock|$DIR/node$n.sock|" -e "s|/var/lib/vswitch|$DIR/state$n|" \
      -e "s|10.244.1.0/24|10.244.$n.0/24|" -e "s|192.168.77.1|192.168.77.$n|" \
      -e "s|^name = \"node1\"|name = \"node$n\"|" config.toml > "$DIR/node$n.toml"
  # `ip netns exec` execs vswitchd, so $! is the daemon itself (a backgrounded shell function
  # would be a subshell, and killing it would orphan the daemon).
  ip netns exec "$P-node$n" "$BIN/vswitchd" --config "$DIR/node$n.toml" 2> "$DIR/node$n.log" &
  DAEMONS+=($!)
  for _ in $(seq 50); do ctl "$n" node >/dev/null 2>&1 && break; sleep 0.2; done
  ctl "$n" node
done

step "node3: kernel flannel-style node (flannel.1, cni0, pod e)"
K=(ip -n "$P-node3")
"${K[@]}" link add flannel.1 type vxlan id 1 dstport 8472 nolearning local 192.168.77.3 dev eth0
"${K[@]}" link set flannel.1 address 0e:00:00:77:03:03 mtu 1450 up
"${K[@]}" addr add 10.244.3.0/32 dev flannel.1
"${K[@]}" link add cni0 type bridge && "${K[@]}" link set cni0 mtu 1450 up
"${K[@]}" addr add 10.244.3.1/24 dev cni0
in_ns "$P-node3" sysctl -qw net.ipv4.ip_forward=1
"${K[@]}" link add veth-e type veth peer name kp0
"${K[@]}" link set kp0 netns "$P-e" && "${K[@]}" link set veth-e master cni0 mtu 1450 up
ip -n "$P-e" link set kp0 name eth0 && ip -n "$P-e" link set eth0 mtu 1450 up
ip -n "$P-e" addr add 10.244.3.2/24 dev eth0 && ip -n "$P-e" route add default via 10.244.3.1
echo "flannel.1 0e:00:00:77:03:03, pod e 10.244.3.2"

step "pods: a, b, c on node1; d on node2 (vswitchctl port add = CNI ADD)"
for pod in a b c; do ctl 1 port add --netns "$P-$pod" --id "pod-$pod" >/dev/null; done
ctl 2 port add --netns "$P-d" --id pod-d >/dev/null
ctl 1 port list; ctl 2 port list

step "tunnels: what flanneld would program from each node's backend data"
M1=$(ctl 1 --json node | json '["vtep_mac"]'); M2=$(ctl 2 --json node | json '["vtep_mac"]')
ctl 1 tunnel add --name node2 --kind vxlan --remote 192.168.77.2 --subnet 10.244.2.0/24 --vtep-mac "$M2" >/dev/null
ctl 1 tunnel add --name node3 --kind vxlan --remote 192.168.77.3 --subnet 10.244.3.0/24 --vtep-mac 0e:00:00:77:03:03 >/dev/null
ctl 2 tunnel add --name node1 --kind vxlan --remote 192.168.77.1 --subnet 10.244.1.0/24 --vtep-mac "$M1" >/dev/null
ctl 2 tunnel add --name node3 --kind vxlan --remote 192.168.77.3 --subnet 10.244.3.0/24 --vtep-mac 0e:00:00:77:03:03 >/dev/null
for n in 1 2; do   # node3's flanneld entries for the vswitch nodes
  M=$([[ $n == 1 ]] && echo "$M1" || echo "$M2")
  "${K[@]}" route add "10.244.$n.0/24" via "10.244.$n.0" dev flannel.1 onlink
  "${K[@]}" neigh add "10.244.$n.0" lladdr "$M" dev flannel.1 nud permanent
  in_ns "$P-node3" bridge fdb append "$M" dev flannel.1 dst "192.168.77.$n"
done
sleep 2   # underlay next hops resolve
ctl 1 tunnel list

IP_B=$(pod_ip "$P-b") IP_D=$(pod_ip "$P-d")
step "ping: same node a -> b; node1 -> node2 a -> d; node1 -> kernel node3 a -> e; node2 -> node3 d -> e; node3 -> node1 e -> a"
in_ns "$P-a" ping -c 3 -i 0.2 "$IP_B" | tail -2
in_ns "$P-a" ping -c 3 -i 0.2 "$IP_D" | tail -2
in_ns "$P-a" ping -c 3 -i 0.2 10.244.3.2 | tail -2
in_ns "$P-d" ping -c 3 -i 0.2 10.244.3.2 | tail -2
in_ns "$P-e" ping -c 3 -i 0.2 "$(pod_ip "$P-a")" | tail -2
step "full pod MTU (1450 = 1500 - VXLAN) with DF: a -> d and a -> e"
in_ns "$P-a" ping -M do -s 1422 -c 2 -i 0.2 "$IP_D" | tail -2
in_ns "$P-a" ping -M do -s 1422 -c 2 -i 0.2 10.244.3.2 | tail -2

for target in "$P-b $IP_B same node" "$P-d $IP_D VXLAN to node2" "$P-e 10.244.3.2 VXLAN to the kernel node"; do
  set -- $target
  step "iperf3 TCP a -> ${*:3}, 3 s"
  in_ns "$1" iperf3 -s -1 >/dev/null 2>&1 &
  sleep 0.5
  in_ns "$P-a" iperf3 -c "$2" -t 3 | grep -E "sender|receiver"
done

step "node1: vswitchctl stats"
ctl 1 stats
step "node1 log"
cat "$DIR/node1.log"
