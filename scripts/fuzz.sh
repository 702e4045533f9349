#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while each and reports what they found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 600 seconds, every target)
#
# Each target starts from the inputs kept in fuzz/regressions/<target>/ (its seeds and every
# crash found so far) and grows its corpus in fuzz/corpus/<target>/. A crash leaves its input in
# fuzz/artifacts/<target>/: fix the cause, then copy the input into fuzz/regressions/<target>/ so
# `cargo test --all-features` (tests/fuzz_regressions.rs) replays it from then on.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer needs nightly compiler flags; on a
# stable toolchain RUSTC_BOOTSTRAP=1 allows them.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds=${1:-600}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

export RUSTC_BOOTSTRAP=1
cargo fuzz build -O

failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    echo "== $target: ${seconds}s"
    if cargo fuzz run -O "$target" "corpus/$target" "regressions/$target" -- \
        -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^Done' "$log" || true
    else
        failed=1
        echo "!! $target failed; its log:"
        tail -40 "$log"
    fi
    rm -f "$log"
done
exit "$failed"
