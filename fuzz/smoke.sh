#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short while (default 20 s).
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain, or a
# stable one with RUSTC_BOOTSTRAP=1 (which this script sets).
#   fuzz/smoke.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for t in $(cargo fuzz list); do
    echo "== $t (${secs}s)"
    if ! cargo fuzz run -O "$t" -- -max_total_time="$secs" >"$out" 2>&1; then
        tail -40 "$out"
        echo "fuzz target $t failed"
        exit 1
    fi
    grep -E "^Done [0-9]+ runs" "$out" || true
done
