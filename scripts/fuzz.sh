#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 30 s each).
# Usage: scripts/fuzz.sh [SECONDS]
# New inputs go to target/fuzz-corpus/; the committed seeds in fuzz/corpus/ are read only.
# cargo-fuzz passes nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
export RUSTC_BOOTSTRAP=1
targets=$(cd fuzz && cargo fuzz list)
for t in $targets; do
  work="target/fuzz-corpus/$t"
  mkdir -p "$work" "fuzz/corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  (cd fuzz && cargo fuzz run "$t" "../$work" "corpus/$t" -- \
      -max_total_time="$seconds" -max_len=600000 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==[0-9]+==|SUMMARY)' || true)
  test "${PIPESTATUS[0]}" -eq 0
done
