#!/usr/bin/env python3
"""A model server as a Python user would write it: FastAPI, uvicorn, one onnxruntime session,
TF Serving's REST request format. The peer that benches/batching_load.rs measures us against.

    pip install -r benches/peer/requirements.txt
    python3 benches/peer/fastapi_server.py MODEL.onnx [INTRA_OP_THREADS]

It binds 127.0.0.1 on a free port and prints `peer at:<host:port>`.
"""
import socket
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request

options = ort.SessionOptions()
options.intra_op_num_threads = int(sys.argv[2]) if len(sys.argv) > 2 else 0
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
app = FastAPI()


@app.post("/v1/models/{name}:predict")
async def predict(name: str, request: Request):
    body = await request.json()
    batch = np.asarray(body["instances"], dtype=np.float32)
    (outputs,) = session.run(None, {input_name: batch})
    return {"predictions": outputs.tolist()}


if __name__ == "__main__":
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"peer at:{sock.getsockname()[0]}:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
