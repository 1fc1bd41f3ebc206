#!/usr/bin/env bash
# Soak: the real binary under mixed load, version swaps, config reloads and hostile requests
# for SECONDS (default 60), then checks that nothing failed or leaked (examples/soak.rs).
# SOAK_PROFILE=release soaks a release build (as docs/reliability.md records).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
profile="${SOAK_PROFILE:-debug}"
if [ "$profile" = release ]; then
  cargo build --locked --release --bin onnx-serving --example soak
else
  cargo build --locked --bin onnx-serving --example soak
fi
exec "${CARGO_TARGET_DIR:-target}/$profile/examples/soak" "$seconds"
