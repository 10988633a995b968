#!/usr/bin/env bash
# Builds every fuzz target of waitprocs-cli and runs each one briefly with
# libFuzzer and AddressSanitizer. Exits non-zero as soon as a target finds a
# crash (a panic or a failed assertion); libFuzzer then saves the input under
# fuzz/artifacts/TARGET/.
#
# Usage: fuzz/run-smoke.sh [SECONDS]   (seconds per target, default 15)
#
# cargo fuzz passes -Z flags to rustc (-Zsanitizer=address and others), which
# only a nightly rustc accepts. RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them, so no nightly toolchain is needed.
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-15}"
TARGETS="duration pid halt job_lines template"

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
unset CARGO_TARGET_DIR

start=$(date +%s)
cargo fuzz build -O
echo "fuzz: built in $(( $(date +%s) - start )) s"

for target in $TARGETS; do
  echo "=== fuzz $target for ${SECONDS_PER_TARGET} s"
  if ! cargo fuzz run -O "$target" -- -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 2> "fuzz/$target.log"; then
    tail -40 "fuzz/$target.log" >&2
    echo "fuzz: $target failed; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units)' "fuzz/$target.log" || true
  rm -f "fuzz/$target.log"
done
echo "fuzz: every target ran without a crash, in $(( $(date +%s) - start )) s in all"
