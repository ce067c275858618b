#!/usr/bin/env bash
# The demo: replays every pcap conformance case through the engine and prints what it did.
# (Until vswitchd lands, the engine on pcap ports is the product you can run.)
# Usage: sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "system packages"
ensure_packages
step "build"
cargo build --locked --release -q -p vswitch --bin vswitch-replay
step "replaying tests/pcap through the vswitch pipeline"
target/release/vswitch-replay tests/pcap
