#!/usr/bin/env bash
# The benchmark harness: vswitch side by side with the Linux bridge, OVS-AF_XDP and two kernel
# flannel-style nodes, in network namespaces it creates (prefix vperf<PID>) and always removes.
#
#   same node   pod a -> pod b: vswitch | Linux bridge | OVS-AF_XDP (userspace datapath, afxdp ports)
#   cross node  pod a (node1) -> pod b (node2) over an underlay bridge:
#               vswitch VXLAN | vswitch IPIP | kernel flannel (flannel.1 + cni0 on both nodes)
#
# Per engine and repetition (engines alternate inside each repetition; medians are reported):
#   latency  UDP ping-pong RTT p50/p99/p99.9 (perf/pingpong.py, both ends on CPU 0)
#   UDP      64-byte frames from trafgen pinned to CPU 0: offered/delivered pps, loss, CPU ns per
#            delivered packet (perf/measure.py says exactly what is counted)
#   TCP      iperf3, one stream, receiver Gbit/s
#
#   ACL scaling (same node): vswitch with no policy (the reference) | vswitch-acl1 | -acl100 |
#               -acl1000 | -acl10000: pod b selected for ingress by one NetworkPolicy of N rules
#               (perf/acl_policy.py: N-1 rules miss the benchmark's traffic, the last allows pod a
#               on UDP 9, UDP 7, TCP 5201), applied and probed before the same three measurements
# The switch worker (vswitchd cpus = [1], OVS pmd-cpu-mask 0x2) runs on CPU 1.
# Writes perf/RESULTS.md + perf/results.png (quick mode: perf/RESULTS-quick.md, results-quick.png);
# a partial run (--only X) writes perf/RESULTS-X.md + results-X.png (-X-quick in quick mode) and
# leaves the full reports alone.
# Not a test: nothing is asserted; the issue's targets are reported as met / not met.
#
# Usage: sudo perf/run.sh [--quick] [--reps N] [--secs S] [--only same|cross|acl]
#   full (default): 5 repetitions, 10 s UDP and TCP, 20000 round trips (~25 min)
#   --quick:        3 repetitions, 2 s UDP and TCP, 5000 round trips (~5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/lib.sh
PACKAGES+=(
  netsniff-ng          # trafgen, the 64-byte UDP generator
  openvswitch-switch   # the OVS-AF_XDP peer
  python3-matplotlib   # perf/results.png
)

ARGS="$*"
MODE=full REPS=5 SECS=10 TCP_SECS=10 RTTS=20000 RTT_MAX=60 QUIET_WAIT=120 ONLY=""
while (($#)); do
  case $1 in
    --quick) MODE=quick REPS=3 SECS=2 TCP_SECS=2 RTTS=5000 RTT_MAX=15 QUIET_WAIT=0 ;;
    --reps) REPS=$2; shift ;;
    --secs) SECS=$2 TCP_SECS=${2%.*}; ((TCP_SECS >= 1)) || TCP_SECS=1; shift ;;
    --only) ONLY=$2; shift ;;
    --quiet-wait) QUIET_WAIT=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((EUID == 0)) || { echo "run as root: sudo perf/run.sh" >&2; exit 2; }
# One harness at a time on a machine: two would measure each other. (Fd 9 is closed for every
# process started below, so a leftover cannot hold the lock.)
exec 9>/tmp/vswitch-perf.lock
flock -n 9 || { echo "perf/run.sh: another run holds /tmp/vswitch-perf.lock" >&2; exit 1; }
((REPS >= 1)) || { echo "--reps must be >= 1" >&2; exit 2; }
[[ $ONLY =~ ^(|same|cross|acl)$ ]] || { echo "--only takes same, cross or acl" >&2; exit 2; }
SUFFIX=${ONLY:+-$ONLY}$([[ $MODE == quick ]] && echo "-quick" || true)
OUT_MD=$ROOT/perf/RESULTS$SUFFIX.md OUT_PNG=$ROOT/perf/results$SUFFIX.png
START=$SECONDS

PY=/usr/bin/python3   # Debian's, which has matplotlib
P="vperf$$"
DIR=$(mktemp -d /tmp/vswitch-perf.XXXXXX)
RAW=$DIR/raw.jsonl META=$DIR/meta.json
NSS=() DAEMONS=() HELPERS=() OVS_UP=""
OVS_ENV=(OVS_RUNDIR="$DIR/ovs/run" OVS_DBDIR="$DIR/ovs/db" OVS_LOGDIR="$DIR/ovs/log")
OVS_CTL=/usr/share/openvswitch/scripts/ovs-ctl
GEN_CPU=0 SW_CPU=1

ovs() { env "${OVS_ENV[@]}" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ctl() { local n=$1; shift; "$BIN/vswitchctl" --socket "$DIR/n$n.sock" "$@"; }
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
die() { echo "perf/run.sh: $*" >&2; exit 1; }

stop_all() {
  local pid
  for pid in "${HELPERS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for pid in "${DAEMONS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  HELPERS=() DAEMONS=()
  if [[ -n $OVS_UP ]]; then
    ovs ip netns exec "$OVS_UP" "$OVS_CTL" stop >/dev/null 2>&1 || true
    for f in "$DIR"/ovs/run/ovs-vswitchd.pid "$DIR"/ovs/run/ovsdb-server.pid; do  # if stop failed
      [[ -s $f ]] && kill -TERM "$(cat "$f")" 2>/dev/null || true
    done
    OVS_UP=""
  fi
  local ns
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  NSS=()
}
cleanup() {
  local rc=$?
  stop_all
  if ((rc != 0)); then
    echo "perf/run.sh failed (exit $rc); daemon logs:" >&2
    tail -n 20 "$DIR"/*.log "$DIR"/ovs/log/*.log 2>/dev/null >&2 || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
step "packages and build"
ensure_packages
command -v trafgen >/dev/null || die "trafgen missing (netsniff-ng)"
cargo build --locked --release -q -p vswitchd -p ctl
BIN=$ROOT/target/release
COMMIT=$(git rev-parse --short HEAD)   # what was built (others may commit during a long run)
DIRTY=$(git status --porcelain --untracked-files=no -- . ':!perf' | head -c1)

new_ns() { local ns; for ns in "$@"; do ip netns add "$ns"; NSS+=("$ns"); ip -n "$ns" link set lo up; done; }

vswitch_config() { # node-number pod-cidr-third-octet cpu uplink encapsulation
  sed -e "s|/run/vswitch/vswitch.sock|$DIR/n$1.sock|" -e "s|/var/lib/vswitch|$DIR/state$1-$RANDOM|" \
      -e "s|10.244.1.0/24|10.244.$2.0/24|" -e "s|192.168.77.1\"|192.168.77.$1\"|" \
      -e "s|^name = \"node1\"|name = \"node$1\"|" -e "s|^cpus = \[1\]|cpus = [$3]|" \
      -e "s|^uplink = \"eth0\"|uplink = \"$4\"|" -e "s|^encapsulation = \"vxlan\"|encapsulation = \"$5\"|" \
      config.toml > "$DIR/n$1.toml"
  local want
  for want in "socket = \"$DIR/n$1.sock\"" "pod_cidr = \"10.244.$2.0/24\"" "node_ip = \"192.168.77.$1\"" \
              "cpus = [$3]" "uplink = \"$4\"" "encapsulation = \"$5\""; do
    grep -qF "$want" "$DIR/n$1.toml" || die "config.toml changed shape: could not set $want"
  done
}
start_vswitchd() { # node-number netns
  # `ip netns exec` execs vswitchd, so $! is the daemon itself.
  ip netns exec "$2" "$BIN/vswitchd" --config "$DIR/n$1.toml" 2>>"$DIR/n$1.log" 9>&- &
  DAEMONS+=($!)
  local i
  for i in $(seq 50); do ctl "$1" node >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "vswitchd node$1 did not come up (log: $(tail -n 5 "$DIR/n$1.log"))"
}

# Each setup_<engine> builds a fresh topology and sets SRC (sending pod netns), DST (receiving pod
# netns), DST_IP and SWITCH_PIDS (the forwarding processes, empty for kernel paths).

# --- same node --------------------------------------------------------------------------------
setup_bridge() {
  new_ns "$P-node" "$P-a" "$P-b"
  ip -n "$P-node" link add br0 type bridge && ip -n "$P-node" link set br0 up
  local i ip
  for i in a b; do
    ip=$([[ $i == a ]] && echo 10.244.1.2 || echo 10.244.1.3)
    ip -n "$P-node" link add "v$i" type veth peer name eth0 netns "$P-$i"
    ip -n "$P-node" link set "v$i" master br0 up
    ip -n "$P-$i" addr add "$ip/24" dev eth0 && ip -n "$P-$i" link set eth0 up
  done
  SRC=$P-a DST=$P-b DST_IP=10.244.1.3 SWITCH_PIDS=() SWITCH_SOCKS=()
}

setup_vswitch() { # [labels]: pod a role=source, pod b role=sink (for the ACL section's policies)
  new_ns "$P-node" "$P-a" "$P-b"
  vswitch_config 1 1 "$SW_CPU" "" vxlan
  start_vswitchd 1 "$P-node"
  local la=() lb=()
  [[ ${1:-} == labels ]] && la=(--label role=source) lb=(--label role=sink)
  ctl 1 port add --netns "$P-a" --id a --ip 10.244.1.2/24 "${la[@]}" >/dev/null
  ctl 1 port add --netns "$P-b" --id b --ip 10.244.1.3/24 "${lb[@]}" >/dev/null
  SRC=$P-a DST=$P-b DST_IP=10.244.1.3 SWITCH_PIDS=("${DAEMONS[@]}") SWITCH_SOCKS=("$DIR/n1.sock")
}

OVS_REASON=""   # set when OVS-AF_XDP cannot run here: its rows say "unavailable: <reason>"
setup_ovs() {
  new_ns "$P-node" "$P-a" "$P-b"
  local i ip
  for i in a b; do
    ip=$([[ $i == a ]] && echo 10.244.1.2 || echo 10.244.1.3)
    ip -n "$P-node" link add "v$i" type veth peer name eth0 netns "$P-$i"
    ip -n "$P-node" link set "v$i" up
    ip -n "$P-$i" addr add "$ip/24" dev eth0 && ip -n "$P-$i" link set eth0 up
    # As for vswitch (which does it itself) and as OVS's AF_XDP guide says: a frame leaving a
    # pod with a partial checksum reaches AF_XDP without it (UDP/TCP would be dropped).
    in_ns "$P-$i" ethtool -K eth0 tx off >/dev/null
  done
  rm -rf "$DIR/ovs" && mkdir -p "$DIR"/ovs/{run,db,log}
  # ovs-vswitchd and ovsdb-server run inside the node netns (their ports are the test's veths),
  # with private run/db/log directories: nothing of a system OVS is touched.
  local out
  if ! out=$(ovs ip netns exec "$P-node" "$OVS_CTL" start --system-id=random --no-monitor 2>&1 9>&-); then
    OVS_REASON="ovs-ctl start failed: $(tail -n 1 <<<"$out")"; return 1
  fi
  OVS_UP=$P-node
  ovs ovs-vsctl get Open_vSwitch . iface_types | grep -qw afxdp \
    || { OVS_REASON="this ovs-vswitchd has no afxdp interface type"; return 1; }
  ovs ovs-vsctl set Open_vSwitch . other_config:pmd-cpu-mask=0x$((1 << SW_CPU)) \
    -- add-br br0 -- set bridge br0 datapath_type=netdev \
    || { OVS_REASON="ovs-vsctl add-br (datapath_type=netdev) failed"; return 1; }
  for i in a b; do
    ovs ovs-vsctl add-port br0 "v$i" -- set interface "v$i" type=afxdp options:xdp-mode=native \
      || { OVS_REASON="ovs-vsctl add-port v$i type=afxdp failed"; return 1; }
  done
  local err
  for i in a b; do
    err=$(ovs ovs-vsctl get interface "v$i" error 2>/dev/null || true)
    [[ -z $err || $err == '[]' ]] || { OVS_REASON="afxdp port v$i: $err"; return 1; }
  done
  SRC=$P-a DST=$P-b DST_IP=10.244.1.3 SWITCH_PIDS=("$(cat "$DIR/ovs/run/ovs-vswitchd.pid")") SWITCH_SOCKS=()
}

# --- cross node -------------------------------------------------------------------------------
underlay() {
  new_ns "$P-ul" "$P-n1" "$P-n2" "$P-a" "$P-b"
  ip -n "$P-ul" link add br0 type bridge && ip -n "$P-ul" link set br0 up
  local n
  for n in 1 2; do
    ip link add eth0 netns "$P-n$n" type veth peer name "u$n" netns "$P-ul"
    ip -n "$P-ul" link set "u$n" master br0 up
    ip -n "$P-n$n" addr add "192.168.77.$n/24" dev eth0 && ip -n "$P-n$n" link set eth0 up
    in_ns "$P-n$n" ethtool -K eth0 tx off >/dev/null   # a veth "wire" finishes checksums
  done
  SRC=$P-a DST=$P-b DST_IP=10.244.2.2
}

# Two vswitch nodes, one worker each: node1 (sender: encap) on CPU 1, node2 (receiver: decap)
# on CROSS_RX_CPU. Two busy workers cannot both have a core of their own next to the generator
# on a 2-CPU machine; see RESULTS.md for the placement used.
CROSS_RX_CPU=${CROSS_RX_CPU:-0}
setup_vswitch_tunnel() { # vxlan | ipip
  underlay
  local n
  for n in 1 2; do
    vswitch_config "$n" "$n" "$([[ $n == 1 ]] && echo "$SW_CPU" || echo "$CROSS_RX_CPU")" eth0 "$1"
    start_vswitchd "$n" "$P-n$n"
  done
  ctl 1 port add --netns "$P-a" --id a --ip 10.244.1.2/24 >/dev/null
  ctl 2 port add --netns "$P-b" --id b --ip 10.244.2.2/24 >/dev/null
  local m1 m2 x1=() x2=()
  m1=$(ctl 1 --json node | json 'd["vtep_mac"]'); m2=$(ctl 2 --json node | json 'd["vtep_mac"]')
  [[ $1 == vxlan ]] && x1=(--vtep-mac "$m2") x2=(--vtep-mac "$m1")
  ctl 1 tunnel add --name n2 --kind "$1" --remote 192.168.77.2 --subnet 10.244.2.0/24 "${x1[@]}" >/dev/null
  ctl 2 tunnel add --name n1 --kind "$1" --remote 192.168.77.1 --subnet 10.244.1.0/24 "${x2[@]}" >/dev/null
  SWITCH_PIDS=("${DAEMONS[@]}") SWITCH_SOCKS=("$DIR/n1.sock" "$DIR/n2.sock")
}
setup_vswitch-vxlan() { setup_vswitch_tunnel vxlan; }
setup_vswitch-ipip() { setup_vswitch_tunnel ipip; }

setup_flannel() { # both nodes wired as flanneld wires them (VXLAN backend)
  underlay
  local n K pod peer
  for n in 1 2; do
    K=(ip -n "$P-n$n") pod=$([[ $n == 1 ]] && echo "$P-a" || echo "$P-b") peer=$((3 - n))
    "${K[@]}" link add flannel.1 type vxlan id 1 dstport 8472 nolearning local "192.168.77.$n" dev eth0
    "${K[@]}" link set flannel.1 address "0e:00:00:77:0$n:0$n" mtu 1450 up
    "${K[@]}" addr add "10.244.$n.0/32" dev flannel.1
    "${K[@]}" link add cni0 type bridge && "${K[@]}" link set cni0 mtu 1450 up
    "${K[@]}" addr add "10.244.$n.1/24" dev cni0
    in_ns "$P-n$n" sysctl -qw net.ipv4.ip_forward=1
    "${K[@]}" link add vp type veth peer name eth0 netns "$pod"
    "${K[@]}" link set vp master cni0 mtu 1450 up
    ip -n "$pod" link set eth0 mtu 1450 up
    ip -n "$pod" addr add "10.244.$n.2/24" dev eth0 && ip -n "$pod" route add default via "10.244.$n.1"
    "${K[@]}" route add "10.244.$peer.0/24" via "10.244.$peer.0" dev flannel.1 onlink
    "${K[@]}" neigh add "10.244.$peer.0" lladdr "0e:00:00:77:0$peer:0$peer" dev flannel.1 nud permanent
    in_ns "$P-n$n" bridge fdb append "0e:00:00:77:0$peer:0$peer" dev flannel.1 dst "192.168.77.$peer"
  done
  SWITCH_PIDS=() SWITCH_SOCKS=()
}

# --- ACL scaling (same node) -------------------------------------------------------------------
# vswitch-aclN: the same-node vswitch with pod a labelled role=source and pod b role=sink; after
# the pods are reachable and listening, run_engine calls acl_apply: one NetworkPolicy
# (perf/acl_policy.py) selects pod b for ingress with N rules, the last of which allows pod a on
# UDP 9, UDP 7 and TCP 5201. (Applied after the connectivity ping: ICMP matches no rule.)
ACL_SIZES=(1 100 1000 10000)
for n in "${ACL_SIZES[@]}"; do eval "setup_vswitch-acl$n() { setup_vswitch labels; }"; done

acl_counters() { # policy name -> "allowed denied conntrack-entries" (all workers); "- -" if absent
  ctl 1 --json stats | "$PY" -c 'import json, sys
d = json.load(sys.stdin)
p = [x for x in d.get("policies", []) if x["name"] == sys.argv[1]]
ct = sum(w.get("conntrack_entries") or 0 for w in d["workers"])
print(*((p[0]["allowed"], p[0]["denied"]) if p else ("-", "-")), ct)' "$1"
}

ACL_A=0 ACL_D=0 ACL_INFO=""
acl_apply() { # engine: apply its policy, then prove it acts (a new flow to UDP 9 is allowed,
  # one to UDP 10 denied) before anything is measured. Sets ACL_A/ACL_D (counters after the
  # probe) and ACL_INFO (JSON fields).
  local n=${1#vswitch-acl} name f=$DIR/acl.yaml t0 apply_s a0 d0 a1 d1 i
  name=perf-acl$n
  "$PY" perf/acl_policy.py --rules "$n" --name "$name" > "$f"
  t0=$(now)
  ctl 1 policy apply -f "$f" >/dev/null || die "$1: vswitchctl policy apply -f ($(stat -c %s "$f") bytes) failed"
  apply_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}')
  ctl 1 --json policy list | "$PY" -c 'import json, sys
p = [x for x in json.load(sys.stdin) if x["name"] == sys.argv[1]]
assert p, "not listed"
assert p[0]["ingress_rules"] == int(sys.argv[2]), "%s ingress rules listed" % p[0]["ingress_rules"]
assert len(p[0]["ports"]) == 1, "selects ports %s, not pod b alone" % p[0]["ports"]' "$name" "$n" \
    || die "$1: vswitchctl policy list does not show $name as applied to pod b alone"
  read -r a0 d0 _ < <(acl_counters "$name")
  # Pod a's neighbour entries are flushed first, so the probe also shows that ARP passes.
  ip -n "$SRC" neigh flush dev eth0
  in_ns "$SRC" "$PY" -c 'import socket, sys
for port in (9, 10):   # a new socket each: a new flow each
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3): s.sendto(b"acl probe", (sys.argv[1], port))' "$DST_IP"
  for i in $(seq 20); do
    sleep 0.05
    read -r a1 d1 _ < <(acl_counters "$name")
    ((a1 > a0 && d1 > d0)) && break
  done
  ((a1 > a0)) || die "$1: $name took no effect: a new UDP :9 flow from pod a was not counted as allowed (allowed $a0 -> $a1; pod a's neighbour table was flushed before)"
  ((d1 > d0)) || die "$1: $name took no effect: UDP :10 from pod a (no rule allows it) was not denied (denied $d0 -> $d1)"
  echo "rep $rep $1: policy $name, $n ingress rule(s), $(stat -c %s "$f") bytes of YAML, applied in $apply_s s; probe: allowed $a0 -> $a1, denied $d0 -> $d1" >&2
  ACL_A=$a1 ACL_D=$d1
  ACL_INFO="\"rules\":$n,\"yaml_bytes\":$(stat -c %s "$f"),\"apply_s\":$apply_s,\"probe_allowed\":$((a1 - a0)),\"probe_denied\":$((d1 - d0))"
}

acl_result() { # section engine -> the row's "acl" JSON: counters over the three measurements
  [[ $1 == acl ]] || { echo null; return; }
  local a d ct
  if [[ $2 == vswitch ]]; then
    read -r _ _ ct < <(acl_counters none)
    echo "{\"rules\":0,\"conntrack_entries\":$ct}"
  else
    read -r a d ct < <(acl_counters "perf-acl${2#vswitch-acl}")
    echo "{$ACL_INFO,\"allowed\":$((a - ACL_A)),\"denied\":$((d - ACL_D)),\"conntrack_entries\":$ct}"
  fi
}

# --- one engine, one repetition -------------------------------------------------------------
trafgen_cfg() { # 64-byte frames (60 + FCS): the sending pod's MAC/IP to its next hop, UDP to :9
  local smac sip nh dmac
  smac=$(ip -n "$SRC" -j link show dev eth0 | json 'd[0]["address"]')
  read -r sip nh < <(ip -n "$SRC" -j route get "$DST_IP" | json 'd[0]["prefsrc"], d[0].get("gateway", d[0]["dst"])')
  dmac=$(ip -n "$SRC" -j neigh show "$nh" dev eth0 | json 'd[0]["lladdr"]')
  cat <<EOF
{
  eth(sa=$smac, da=$dmac),
  ipv4(saddr=$sip, daddr=$DST_IP, ttl=64, df),
  udp(sp=40000, dp=9),
  fill(0x41, 18)
}
EOF
}

wait_port() { # netns proto port
  local i
  for i in $(seq 50); do
    in_ns "$1" ss -Hln"${2:0:1}" "sport = :$3" | grep -q . && return 0; sleep 0.05
  done
  die "nothing listens on $2 port $3 in $1"
}

tcp_gbps() { # the server is started by the caller (a background job must be a child of this shell)
  in_ns "$SRC" timeout --foreground -k 2 $((TCP_SECS + 15)) iperf3 -c "$DST_IP" -p 5201 -t "$TCP_SECS" -J 2>/dev/null |
    json 'd["end"]["sum_received"]["bits_per_second"] / 1e9' || echo null
}

now() { echo "${EPOCHREALTIME/,/.}"; }
PHASES=""
phase() { # name: time since the previous mark
  local t; t=$(now); PHASES+="\"$1\":$(awk -v a="$MARK" -v b="$t" 'BEGIN {printf "%.1f", b - a}'),"; MARK=$t
}

quiet() { # foreign load: the busiest CPU's busy % over 0.3 s while nothing of ours runs
  local waited=0 busy
  while :; do
    busy=$("$PY" perf/measure.py idle --secs 0.3 | json 'round(max(d["busy_pct"].values()))')
    if ((busy <= 15 || waited >= QUIET_WAIT)); then echo "$busy"; return; fi
    ((waited == 0)) && echo "foreign load: a CPU is ${busy} % busy; waiting up to ${QUIET_WAIT} s" >&2
    sleep 2; waited=$((waited + 2))
  done
}

run_engine() { # section engine rep
  local section=$1 engine=$2 rep=$3 t0=$SECONDS foreign
  if [[ $engine == ovs && -n $OVS_REASON ]]; then return 0; fi
  foreign=$(quiet)
  PHASES="" MARK=$(now)
  if ! "setup_$engine"; then
    [[ $engine == ovs ]] || die "setup of $engine failed"
    echo "rep $rep $engine: unavailable: $OVS_REASON"; stop_all; return 0
  fi
  phase setup
  local ok=""
  for _ in $(seq 30); do   # the first packets also resolve ARP and tunnel next hops
    in_ns "$SRC" ping -c 1 -W 0.3 "$DST_IP" >/dev/null 2>&1 && { ok=1; break; }
  done
  if [[ -z $ok ]]; then
    [[ $engine == ovs ]] && { OVS_REASON="no connectivity between the pods through OVS"; stop_all; return 0; }
    die "$engine: $SRC cannot reach $DST_IP"
  fi
  trafgen_cfg > "$DIR/tg.cfg"
  # the receiving pod: a sink on UDP :9 that never reads (packets end as RcvbufErrors, no ICMP).
  # Background jobs are started with `ip netns exec` itself (it execs), so $! is the process.
  ip netns exec "$DST" "$PY" -c 'import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,4096)
s.bind(("0.0.0.0",9)); time.sleep(1e9)' 9>&- &
  local sink=$!
  HELPERS+=("$sink")
  ip netns exec "$DST" taskset -c "$GEN_CPU" "$PY" perf/pingpong.py server --port 7 9>&- &
  HELPERS+=($!)
  wait_port "$DST" udp 9; wait_port "$DST" udp 7
  phase ready
  if [[ $engine == vswitch-acl* ]]; then acl_apply "$engine"; phase policy; fi

  local lat udp tcp sw=() pid
  # A failed measurement is reported (console, RESULTS.md notes) and left out of the medians.
  lat=$(in_ns "$SRC" taskset -c "$GEN_CPU" "$PY" perf/pingpong.py client --dst "$DST_IP" --port 7 \
        --count "$RTTS" --warmup 500 --max-secs "$RTT_MAX") || lat='{"error": "pingpong.py failed"}'

  phase latency
  for pid in "${SWITCH_PIDS[@]}"; do sw+=(--switch-pid "$pid"); done
  for sock in "${SWITCH_SOCKS[@]}"; do sw+=(--vswitch-sock "$sock" --vswitchctl "$BIN/vswitchctl"); done
  [[ $engine == ovs ]] && sw+=(--ovs-rundir "$DIR/ovs/run")
  udp=$("$PY" perf/measure.py udp --ns "$SRC" --cfg "$DIR/tg.cfg" --sink-pid "$sink" "${sw[@]}" \
        --gen-cpu "$GEN_CPU" --secs "$SECS" --warmup 0.5 --netns-prefix "$P-") \
    || udp='{"error": "measure.py failed"}'
  sleep 0.3   # let the flood drain before TCP
  phase udp
  ip netns exec "$DST" iperf3 -s -1 -p 5201 >/dev/null 2>&1 9>&- &
  local srv=$!
  HELPERS+=("$srv")
  wait_port "$DST" tcp 5201
  tcp=$(tcp_gbps)
  wait "$srv" 2>/dev/null || true
  phase tcp
  local acl
  acl=$(acl_result "$section" "$engine")
  stop_all
  phase teardown
  printf '{"section":"%s","engine":"%s","rep":%s,"udp":%s,"lat":%s,"tcp_gbps":%s,"acl":%s,"foreign_pct":%s,"phases_s":{%s}}\n' \
    "$section" "$engine" "$rep" "$udp" "$lat" "$tcp" "$acl" "$foreign" "${PHASES%,}" >> "$RAW"
  "$PY" - "$RAW" "$((SECONDS - t0))" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1]); u, l = r["udp"], r["lat"]
f = lambda v, spec="{:.0f}": "n/a" if v is None else spec.format(v)
k = lambda d, key, div=1: None if d.get(key) is None else d[key] / div
print(f"rep {r['rep']} {r['engine']:<14} UDP {f(k(u, 'delivered_pps', 1e3), '{:5.0f}')} kpps of"
      f" {f(k(u, 'offered_pps', 1e3), '{:4.0f}')} (loss {f(u.get('loss_pct'), '{:4.1f}')} %),"
      f" {f(u.get('machine_ns'))} / {f(u.get('switch_ns'))} ns/pkt machine / switch;"
      f" RTT {f(l.get('p50_us'))}/{f(l.get('p99_us'))}/{f(l.get('p999_us'))} us"
      f"{' (%d lost)' % l['lost'] if l.get('lost') else ''}; TCP {f(r['tcp_gbps'], '{:.2f}')} Gbit/s;"
      f"{' ERROR: ' + u['error'] if 'error' in u else ''}{' ERROR: ' + l['error'] if 'error' in l else ''}"
      f" {sys.argv[2]} s, foreign load {r['foreign_pct']} %"
      f"{'; foreign load %.0f %% during UDP' % u['foreign_cpu_pct'] if u.get('foreign_cpu_pct', 0) > 5 else ''}"
      f"{'; clock jump: tick-based window' if u.get('clock_jump') else ''}"
      f"{'; trafgen restarted %dx' % u['trafgen_restarts'] if u.get('trafgen_restarts') else ''}"
      + ("" if not r.get("acl") else
         f"; conntrack entries {r['acl']['conntrack_entries']}" if not r["acl"]["rules"] else
         f"; policy {r['acl']['rules']} rules during the measurements: {r['acl']['allowed']} flows allowed,"
         f" {r['acl']['denied']} packets denied, conntrack entries {r['acl']['conntrack_entries']}"))
EOF
}

# ---------------------------------------------------------------------------------------------
SAME=(vswitch bridge ovs) CROSS=(vswitch-vxlan vswitch-ipip flannel) ACLS=(vswitch)
for n in "${ACL_SIZES[@]}"; do ACLS+=("vswitch-acl$n"); done
case $ONLY in
  same) CROSS=() ACLS=() ;;
  cross) SAME=() ACLS=() ;;
  acl) SAME=() CROSS=() ;;
esac

step "$MODE mode: $REPS repetitions, UDP ${SECS} s, TCP ${TCP_SECS} s, $RTTS round trips; prefix $P"
for rep in $(seq "$REPS"); do
  for engine in "${SAME[@]}"; do run_engine same "$engine" "$rep"; done
  for engine in "${CROSS[@]}"; do run_engine cross "$engine" "$rep"; done
  for engine in "${ACLS[@]}"; do run_engine acl "$engine" "$rep"; done
done

step "report"
export MODE REPS SECS TCP_SECS RTTS GEN_CPU SW_CPU CROSS_RX_CPU OVS_REASON ONLY QUIET_WAIT COMMIT DIRTY ARGS
ELAPSED=$((SECONDS - START)) "$PY" - "$META" <<'EOF'
import json, os, subprocess, sys, datetime, platform
def sh(c): return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
e = os.environ
cpuinfo = open("/proc/cpuinfo").read().splitlines()
model = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")), "?")
mhz = next((float(l.split(":", 1)[1]) for l in cpuinfo if l.startswith("cpu MHz")), None)
json.dump({
  "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
  "nproc": sh("nproc"), "cpu_model": model, "cpu_mhz": mhz, "kernel": platform.release(),
  "commit": e["COMMIT"], "dirty": bool(e["DIRTY"]),
  "mode": e["MODE"], "reps": int(e["REPS"]), "secs": float(e["SECS"]), "tcp_secs": int(e["TCP_SECS"]),
  "rtts": int(e["RTTS"]), "gen_cpu": int(e["GEN_CPU"]), "sw_cpu": int(e["SW_CPU"]),
  "cross_rx_cpu": int(e["CROSS_RX_CPU"]), "only": e["ONLY"],
  "trafgen": sh("trafgen -v | head -1"), "ovs": sh("ovs-vswitchd --version | head -1"),
  "ovs_unavailable": e["OVS_REASON"], "elapsed_s": int(e["ELAPSED"]),
  "quiet_wait": int(e["QUIET_WAIT"]), "args": e["ARGS"], "acl_sizes": [1, 100, 1000, 10000],
}, open(sys.argv[1], "w"), indent=1)
EOF
"$PY" perf/report.py --raw "$RAW" --meta "$META" --md "$OUT_MD" --png "$OUT_PNG"
# PERF_KEEP=DIR keeps the raw measurements (report.py can redraw from them)
[[ -n ${PERF_KEEP:-} ]] && mkdir -p "$PERF_KEEP" && cp "$RAW" "$META" "$PERF_KEEP"/
echo "wrote $OUT_MD and $OUT_PNG ($((SECONDS - START)) s)"
