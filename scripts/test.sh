#!/usr/bin/env bash
# The whole test suite, from scratch: system packages, build, lint, every test tier that exists.
# Usage: sudo scripts/test.sh      (CI runs it through .ci/run, as root)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "system packages"
ensure_packages

step "build (locked, all targets)"
cargo build --locked --workspace --all-targets

step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

step "pcap cases are exactly what tests/pcap/gen_cases.py crafts"
/usr/bin/python3 tests/pcap/gen_cases.py --check

step "malformed-frame corpora are exactly what tests/malformed/gen_corpus.py crafts"
/usr/bin/python3 tests/malformed/gen_corpus.py --check

step "unit, conformance and property tests"
cargo test --locked --workspace

step "pcap conformance report"
cargo run --locked -q -p vswitch --bin vswitch-replay -- tests/pcap

step "fuzz targets (cargo fuzz on stable, 60 s in total; long runs: scripts/fuzz.sh --each 600)"
scripts/fuzz.sh --total 60
