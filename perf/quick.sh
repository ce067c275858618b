#!/usr/bin/env bash
# First same-node comparison: two pods switched by vswitchd vs by a Linux bridge, in one run,
# engines alternating, REPS repetitions each, medians. Not a test: it asserts nothing.
#   UDP: iperf3 -u -l 18 -b 0 (64-byte frames on the wire incl. FCS), delivered pps at the receiver
#   TCP: iperf3 -t SECS, receiver Gbit/s
# Usage: sudo perf/quick.sh [REPS] [SECS]     (the full harness arrives with the perf issue)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
REPS=${1:-3} SECS=${2:-5}
ensure_packages
cargo build --locked --release -q -p vswitchd -p ctl
BIN=$PWD/target/release
P="vperf$$" DIR=$(mktemp -d /tmp/vswitch-perf.XXXXXX) DAEMON=""
NSS=("$P-node" "$P-a" "$P-b")
cleanup() {
  if [[ -n "$DAEMON" ]]; then kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true; fi
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

fresh() { # new namespaces, pods with addresses .2 and .3
  cleanup_ns; for ns in "${NSS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
}
cleanup_ns() { for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done; }

setup_bridge() {
  fresh
  ip -n "$P-node" link add br0 type bridge && ip -n "$P-node" link set br0 up
  for i in a b; do
    local ip=$([[ $i == a ]] && echo 10.244.1.2 || echo 10.244.1.3)
    ip -n "$P-node" link add "v$i" type veth peer name eth0 netns "$P-$i"
    ip -n "$P-node" link set "v$i" master br0 up
    ip -n "$P-$i" addr add "$ip/24" dev eth0 && ip -n "$P-$i" link set eth0 up
  done
}
setup_vswitch() {
  fresh
  sed -e "s|/run/vswitch/vswitch.sock|$DIR/sock|" -e "s|/var/lib/vswitch|$DIR/state-$RANDOM|" \
      -e 's|^uplink = "eth0"|uplink = ""|' config.toml > "$DIR/config.toml"
  ip netns exec "$P-node" "$BIN/vswitchd" --config "$DIR/config.toml" 2>>"$DIR/log" &
  DAEMON=$!
  for _ in $(seq 50); do "$BIN/vswitchctl" --socket "$DIR/sock" node >/dev/null 2>&1 && break; sleep 0.2; done
  "$BIN/vswitchctl" --socket "$DIR/sock" port add --netns "$P-a" --id a --ip 10.244.1.2/24 >/dev/null
  "$BIN/vswitchctl" --socket "$DIR/sock" port add --netns "$P-b" --id b --ip 10.244.1.3/24 >/dev/null
}
teardown() {
  if [[ -n "$DAEMON" ]]; then kill -TERM "$DAEMON"; wait "$DAEMON" || true; DAEMON=""; fi
  cleanup_ns
}

udp_pps() {
  ip netns exec "$P-b" iperf3 -s -1 -p 5201 >/dev/null 2>&1 & sleep 0.3
  ip netns exec "$P-a" taskset -c 0 iperf3 -c 10.244.1.3 -u -l 18 -b 0 -t "$SECS" -J 2>/dev/null |
    python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum"]; print((e["packets"]-e["lost_packets"])/e["seconds"], e["packets"]/e["seconds"])'
}
tcp_gbps() {
  ip netns exec "$P-b" iperf3 -s -1 -p 5201 >/dev/null 2>&1 & sleep 0.3
  ip netns exec "$P-a" iperf3 -c 10.244.1.3 -t "$SECS" -J 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
}

declare -A UDP TCP OFFERED
for rep in $(seq "$REPS"); do
  for engine in vswitch bridge; do
    "setup_$engine"
    ip netns exec "$P-a" ping -c 2 -i 0.2 -W 1 10.244.1.3 >/dev/null
    read -r pps offered < <(udp_pps)
    gbps=$(tcp_gbps)
    UDP[$engine]+="$pps "; OFFERED[$engine]+="$offered "; TCP[$engine]+="$gbps "
    teardown
    printf 'rep %s %-7s: 64 B UDP delivered %.0f pps of %.0f offered, TCP %.2f Gbit/s\n' \
      "$rep" "$engine" "$pps" "$offered" "$gbps"
  done
done
echo
echo "| engine | 64 B UDP delivered pps (median) | offered pps | TCP Gbit/s (median) |"
echo "|---|---|---|---|"
for engine in vswitch bridge; do
  printf '| %s | %.0f | %.0f | %.2f |\n' "$engine" \
    "$(tr ' ' '\n' <<<"${UDP[$engine]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${OFFERED[$engine]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${TCP[$engine]}" | grep . | median)"
done
