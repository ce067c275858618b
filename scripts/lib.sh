# Shared by scripts/*.sh: the Debian packages the build and tests need, and output helpers.

# Everything the build and the test suite use. Installed only when missing (idempotent).
PACKAGES=(
  clang           # compiles vswitchd's XDP programs (bpf/*.c, -target bpf)
  linux-libc-dev  # kernel UAPI headers for the XDP programs
  iproute2        # ip netns / ip link in network tests
  ethtool         # offload checks in network tests
  iperf3          # TCP through the switch in network tests
  iputils-ping    # ping in network tests
  procps          # ps/top figures (CPU of an idle daemon)
  python3-scapy   # tests/pcap/gen_cases.py crafts the conformance pcaps
  tshark          # decoding captures in tests
  tcpdump         # capturing on test underlays
  containernetworking-plugins  # reference CNI plugins (bridge, host-local) in /usr/lib/cni
  tcpreplay       # replays the malformed-frame corpora onto real veths (tests/malformed.rs)
)

step() { printf '\n==> %s\n' "$*"; }

ensure_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "all present: ${PACKAGES[*]}"
  fi
  command -v cargo >/dev/null || { echo "cargo is not on PATH: install the Rust toolchain (rustup)" >&2; exit 1; }
}
