"""Shared by the Python tests: the real onnx-serving binary on 127.0.0.1:0."""

import contextlib
import os
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serve(args, marker):
    """Starts the binary (ONNX_SERVING_BIN, default target/debug/onnx-serving) with `args` and
    yields the address printed after `marker` (e.g. "Running gRPC ModelServer at ")."""
    binary = os.environ.get("ONNX_SERVING_BIN", str(ROOT / "target" / "debug" / "onnx-serving"))
    process = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, text=True)
    address = None
    for line in process.stdout:
        if line.startswith(marker):
            address = line.removeprefix(marker).removesuffix(" ...\n").strip()
            break
    if address is None:
        process.wait()
        pytest.fail(f"onnx-serving exited ({process.returncode}) before printing {marker!r}")
    # Keep draining stdout so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    try:
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)
