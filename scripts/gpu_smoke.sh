#!/usr/bin/env bash
# GPU smoke test, for whoever has an NVIDIA GPU: serves a ResNet-18 on CPU, on CUDA and on
# TensorRT (each *required*, so a silent fallback fails the run), checks that every provider
# gives the CPU's answer, that a second TensorRT start reuses the engine cache, and prints
# throughput against CPU. The project's own machines have no GPU; see docs/gpu.md.
#
#   pip uninstall -y onnxruntime    # the CPU wheel would shadow the GPU one
#   pip install 'onnxruntime-gpu[cuda,cudnn]==1.31.1' tensorrt-cu13-libs==10.14.1.48 -r scripts/requirements.txt
#   bash scripts/gpu_smoke.sh [seconds per run, default 10] [concurrency, default 8]
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN="${1:-10}"
CONCURRENCY="${2:-8}"
WORK="$(mktemp -d)"
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: this script needs an NVIDIA GPU and driver"; exit 1; }
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader

ORT_LIB="${ORT_DYLIB_PATH:-$(python3 -c 'import onnxruntime, os, glob; d = os.path.join(os.path.dirname(onnxruntime.__file__), "capi"); print(sorted(glob.glob(d + "/libonnxruntime.so*"))[0])')}"
python3 -c 'import onnxruntime as o; p = o.get_available_providers(); print("wheel providers:", p); assert "CUDAExecutionProvider" in p, "install onnxruntime-gpu, not onnxruntime"'
# The CUDA, cuDNN and TensorRT wheels put their libraries under site-packages.
NVIDIA_LIBS="$(python3 - <<'EOF'
import glob, os, site
dirs = set()
for root in site.getsitepackages():
    for pattern in ("nvidia/*/lib", "tensorrt_libs"):
        dirs.update(glob.glob(os.path.join(root, pattern)))
print(":".join(sorted(dirs)))
EOF
)"
export LD_LIBRARY_PATH="${NVIDIA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

cargo build --release --locked --bin onnx-serving
MODEL="$WORK/resnet18"
python3 scripts/make_resnet.py "$MODEL/1/model.onnx"

start() {  # start <log> <args...>: serves resnet18 on a free port, sets PORT
  local log="$1"; shift
  target/release/onnx-serving serve --model_name=resnet --model_base_path="$MODEL" --port=0 \
    --rest_api_address=127.0.0.1:0 --ort_library_path="$ORT_LIB" --max_num_load_retries=0 "$@" \
    >"$log.out" 2>"$log" &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    PORT="$(sed -n 's/^Exporting HTTP\/REST API at:127.0.0.1:\([0-9]*\).*/\1/p' "$log.out")"
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log.out" "$log"; echo "the server did not start"; exit 1; }
    sleep 0.5
  done
  echo "the server did not start within 300 s"; exit 1
}

stop() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }

measure() {  # measure <name>: prints the answer digest and the throughput
  python3 - "$PORT" "$1" "$SECONDS_PER_RUN" "$CONCURRENCY" <<'EOF'
import json, sys, threading, time, urllib.request
port, name, seconds, concurrency = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
url = f"http://127.0.0.1:{port}/v1/models/resnet:predict"
image = [[[[((c * 31 + y * 7 + x) % 17) / 17.0 for x in range(64)] for y in range(64)] for c in range(3)]]
body = json.dumps({"instances": image}).encode()
def call():
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))["predictions"][0]
first = call()
top = sorted(range(len(first)), key=lambda i: -first[i])[:5]
with open(f"answer-{name}.json", "w") as f:
    json.dump(first, f)
count, stop = [0], time.time() + seconds
def worker():
    while time.time() < stop:
        call()
        count[0] += 1
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
[t.start() for t in threads]
[t.join() for t in threads]
print(f"{name}: {count[0] / seconds:.1f} requests/s at concurrency {concurrency}; top-5 classes {top}")
EOF
}

run() {  # run <name> <args...>
  local name="$1"; shift
  start "$WORK/$name.log" "$@"
  (cd "$WORK" && measure "$name")
  grep -h "servable version is available" "$WORK/$name.log" | sed 's/^/  /'
  stop
}

run cpu --execution_providers=cpu
run cuda --execution_providers=cuda,cpu --require_execution_provider=cuda
run tensorrt --execution_providers=tensorrt,cuda,cpu --require_execution_provider=tensorrt \
  --tensorrt_cache_dir="$WORK/trt-cache"
# A second start must find the engine in the cache instead of building it again.
run tensorrt-cached --execution_providers=tensorrt,cuda,cpu --require_execution_provider=tensorrt \
  --tensorrt_cache_dir="$WORK/trt-cache"
grep -q "reusing cached TensorRT engines" "$WORK/tensorrt-cached.log" \
  || { echo "FAIL: the second TensorRT start did not reuse the engine cache"; exit 1; }

python3 - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
cpu = json.load(open(f"{work}/answer-cpu.json"))
for name, tolerance in (("cuda", 1e-3), ("tensorrt", 1e-2), ("tensorrt-cached", 1e-2)):
    other = json.load(open(f"{work}/answer-{name}.json"))
    worst = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(cpu, other))
    status = "ok" if worst <= tolerance else "FAIL"
    print(f"{name}: largest relative difference from CPU {worst:.2e} ({status}, tolerance {tolerance})")
    if status == "FAIL":
        sys.exit(1)
EOF
echo "GPU smoke test passed"
