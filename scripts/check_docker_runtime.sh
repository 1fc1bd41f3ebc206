#!/usr/bin/env bash
# Replays the runtime stages of ./Dockerfile on the host (no Docker engine runs here): the
# library taken from the onnxruntime wheel as stage 2 does, the binary and entrypoint laid
# out as stage 3 does, then the entrypoint started with only the image's environment, and a
# prediction made. Usage: scripts/check_docker_runtime.sh [path/to/onnx-serving]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/onnx-serving}
root=$(mktemp -d)
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$root"' EXIT

# The paths and versions come from the Dockerfile itself, so this check follows it.
ort_version=$(sed -n 's/.*--target \/wheel onnxruntime==\([0-9.]*\).*/\1/p' Dockerfile)
ort_path=$(sed -n 's/^ENV ORT_DYLIB_PATH=\([^ ]*\).*/\1/p' Dockerfile)
[ -n "$ort_version" ] && [ -n "$ort_path" ] || { echo "cannot read the Dockerfile's onnxruntime version or ORT_DYLIB_PATH" >&2; exit 1; }

# Stage 2.
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$root/wheel" "onnxruntime==$ort_version"
mkdir -p "$root$(dirname "$ort_path")" "$root/usr/local/bin" "$root/models"
cp "$root/wheel/onnxruntime/capi/libonnxruntime.so.$ort_version" "$root$ort_path"
rm -rf "$root/wheel"
# Stage 3.
cp "$binary" "$root/usr/local/bin/onnx-serving"
cp docker/entrypoint.sh "$root/usr/local/bin/tf_serving_entrypoint.sh"
cp -r models/mnist_onnx "$root/models/mnist"

# The image's environment only: no Python package to fall back on.
env -i PATH="$root/usr/local/bin:/usr/bin:/bin" HOME=/nonexistent \
  ORT_DYLIB_PATH="$root$ort_path" MODEL_BASE_PATH="$root/models" MODEL_NAME=mnist \
  ONNX_SERVING_EXTRA_ARGS="--rest_api_address=127.0.0.1:0 --grpc_address=127.0.0.1:0" \
  tf_serving_entrypoint.sh >"$root/stdout" 2>"$root/stderr" &
server_pid=$!
address=
for _ in $(seq 1 300); do
  address=$(sed -n 's/^Exporting HTTP\/REST API at:\([^ ]*\).*/\1/p' "$root/stdout")
  [ -n "$address" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$root/stderr" >&2; echo "the entrypoint exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$address" ] || { cat "$root/stderr" >&2; echo "no REST address after 30 s" >&2; exit 1; }
grep -q "loaded ONNX Runtime.*$ort_path" "$root/stderr" || { cat "$root/stderr" >&2; echo "not the image's library" >&2; exit 1; }
body=$(python3 -c 'import json; print(json.dumps({"instances": [[0.5] * 784]}))')
answer=$(curl -sS -d "$body" "http://$address/v1/models/mnist:predict")
python3 -c 'import json,sys; p=json.loads(sys.argv[1])["predictions"]; assert len(p)==1 and len(p[0])==10, p' "$answer"
echo "docker runtime check passed: the entrypoint served mnist from $ort_path"
