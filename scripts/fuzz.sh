#!/usr/bin/env bash
# Builds and runs the cargo-fuzz targets of fuzz/ for a bounded time, on the stable toolchain.
#
# Usage: scripts/fuzz.sh [--total SECS | --each SECS] [--jobs N] [--merge] [TARGET...]
#   --total SECS  time for all targets together (default 60), shared equally
#   --each SECS   time per target instead (long campaigns: --each 600)
#   --jobs N      targets fuzzed at once (default: the number of CPUs)
#   --merge       afterwards, add what the run found covering new edges to fuzz/corpus/<target>;
#                 without it the committed corpus is only read (runs use a temporary copy)
#   TARGET...     some targets only (default: every fuzz/fuzz_targets/*.rs)
#
# libFuzzer-based targets build on stable: cargo-fuzz is told `--sanitizer none` (sanitizers
# need nightly's -Zsanitizer), so it passes only stable rustc flags (sanitizer-coverage passes,
# --cfg fuzzing); `--debug-assertions` keeps overflow checks and debug_assert!s on.
# cargo-fuzz itself is installed from crates.io into target/fuzz-tools when not on PATH.
#
# Exits 1 if any target crashed (panic, abort), hung (10 s) or went over 2 GiB; the input that
# did it is left in fuzz/artifacts/<target>/ with the command to reproduce it printed.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
TOOLS=target/fuzz-tools
BUILD_DIR=target/fuzz
FLAGS=(--sanitizer none --debug-assertions --target-dir "$BUILD_DIR")

total=60
each=""
jobs=$(nproc 2>/dev/null || echo 1)
merge=0
targets=()
while (($#)); do
  case "$1" in
    --total) total=$2; shift 2 ;;
    --each) each=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if ((${#targets[@]} == 0)); then
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
  [[ -f fuzz/fuzz_targets/$t.rs ]] || { echo "no fuzz target $t" >&2; exit 2; }
done
((jobs > ${#targets[@]})) && jobs=${#targets[@]}
((jobs < 1)) && jobs=1
if [[ -z $each ]]; then
  # Targets run $jobs at a time: each gets its share of the wall-clock budget.
  rounds=$(( (${#targets[@]} + jobs - 1) / jobs ))
  each=$(( total / rounds ))
  ((each < 1)) && each=1
fi

step() { printf '\n==> %s\n' "$*"; }

step "cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  if [[ ! -x $TOOLS/bin/cargo-fuzz ]]; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$TOOLS"
  fi
  export PATH="$PWD/$TOOLS/bin:$PATH"
fi
cargo fuzz --version

step "build (stable, no sanitizer, debug assertions)"
# cargo-fuzz has no --locked: check fuzz/Cargo.lock is current before it may rewrite it.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
cargo fuzz build "${FLAGS[@]}"

# Per-target libFuzzer options: the pipeline's inputs carry many frames.
declare -A MAX_LEN=([pipeline]=16384)

work=$(mktemp -d "${TMPDIR:-/tmp}/vswitch-fuzz.XXXXXX")
cleanup() {
  local pids
  pids=$(jobs -pr)
  [[ -n $pids ]] && kill $pids 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

run_one() {
  local t=$1 corpus=$work/$1/corpus log=$work/$1/log
  local opts=(-max_total_time="$each" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048)
  [[ -f fuzz/dict/$t.dict ]] && opts+=(-dict="fuzz/dict/$t.dict")
  [[ -n ${MAX_LEN[$t]:-} ]] && opts+=(-max_len="${MAX_LEN[$t]}")
  set +e
  cargo fuzz run "${FLAGS[@]}" "$t" "$corpus" -- "${opts[@]}" >"$log" 2>&1
  echo $? >"$work/$t/status"
  set -e
}

step "fuzz ${#targets[@]} targets, ${each}s each, $jobs at a time"
declare -A before_artifacts
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "fuzz/artifacts/$t"
  if [[ -d fuzz/corpus/$t ]]; then
    find "fuzz/corpus/$t" -maxdepth 1 -type f -exec cp -t "$work/$t/corpus" {} +
  fi
  ls -1 "$work/$t/corpus" | wc -l >"$work/$t/seeds"
  before_artifacts[$t]=$(find "fuzz/artifacts/$t" -type f | sort)
done
for t in "${targets[@]}"; do
  while (($(jobs -pr | wc -l) >= jobs)); do wait -n || true; done
  echo "  $t"
  run_one "$t" &
done
wait

failed=()
report=$work/failures
: >"$report"
printf '\n%-12s %12s %10s %8s %8s  %s\n' TARGET RUNS "EXEC/S" SEEDS CORPUS CRASHES
for t in "${targets[@]}"; do
  log=$work/$t/log
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$work/$t/corpus" -maxdepth 1 -type f | wc -l)
  new_artifacts=$(comm -13 <(echo "${before_artifacts[$t]}") \
    <(find "fuzz/artifacts/$t" -type f | sort) | sed '/^$/d')
  crashes=$(grep -c . <<<"$new_artifacts" || true)
  status=$(cat "$work/$t/status")
  if ((status != 0)) && ((crashes == 0)); then crashes="?"; fi
  printf '%-12s %12s %10s %8s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" \
    "$(cat "$work/$t/seeds")" "$corpus" "$crashes"
  if ((status != 0)) || [[ -n $new_artifacts ]]; then
    failed+=("$t")
    {
      echo
      echo "--- $t failed (exit $status):"
      # From the panic (or libFuzzer's report) on; the whole log if neither is there.
      sed -n '/panicked at\|ERROR: libFuzzer\|ERROR: .*Sanitizer/,$p' "$log" | grep -v '^#[0-9]' \
        | head -60 | grep . || tail -40 "$log"
      while read -r a; do
        [[ -n $a ]] || continue
        echo "reproduce: cargo fuzz run ${FLAGS[*]} $t $a"
      done <<<"$new_artifacts"
    } >>"$report"
  fi
  if ((merge)); then
    mkdir -p "fuzz/corpus/$t"
    # Only what adds edge coverage to the committed corpus goes in (hit counts would keep
    # thousands of near-duplicates).
    cargo fuzz run "${FLAGS[@]}" "$t" "fuzz/corpus/$t" "$work/$t/corpus" -- \
      -merge=1 -use_counters=0 ${MAX_LEN[$t]:+-max_len=${MAX_LEN[$t]}} >"$work/$t/merge.log" 2>&1 \
      || { echo "merge of $t failed:" >&2; tail -20 "$work/$t/merge.log" >&2; failed+=("$t"); }
  fi
done

# cargo-fuzz creates an artifacts folder per target; leave none behind empty.
find fuzz/artifacts -mindepth 1 -type d -empty -delete 2>/dev/null || true

if ((${#failed[@]})); then
  cat "$report" >&2
  echo >&2
  echo "fuzzing failed: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
echo
echo "no crashes (${#targets[@]} targets, ${each}s each)"
