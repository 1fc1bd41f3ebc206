#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 20), one after another, on the
# stable toolchain (libFuzzer with AddressSanitizer, debug assertions and overflow checks).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# New inputs that add coverage go to fuzz/corpus/<target>/ (not committed); the committed
# seeds are fuzz/seeds/<target>/ (`cargo run --example fuzz_seeds` writes them). A failing
# input is saved under fuzz/artifacts/<target>/ and the script stops with its report; replay
# it with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>` from fuzz/. The last lines of each
# run (executions, exec/s, coverage) are printed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
shift || true
if ! command -v cargo-fuzz >/dev/null; then
  echo "== installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# NOTE: cargo-fuzz needs nightly flags (-Z sanitizer, -Z build-std off); this lets the
# installed stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
echo "== building ${#targets[@]} fuzz targets"
cargo fuzz build
# NOTE: the binaries built above run directly: a source edited meanwhile cannot trigger a
# rebuild between targets.
bin_dir="target/$(rustc -vV | sed -n 's/^host: //p')/release"
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  log="$(mktemp)"
  echo "== $target: ${seconds} s"
  if ! "$bin_dir/$target" -artifact_prefix="artifacts/$target/" "corpus/$target" "seeds/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "FAILED: fuzz target $target (input saved under fuzz/artifacts/$target/)"
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" || true
  grep -E '#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
  rm -f "$log"
done
echo "== every fuzz target ran ${seconds} s without a failure"
