"""TF Serving's MNIST tutorial, end to end: serve version 1 of the tutorial SavedModel
(models/mnist, tensorflow platform, from its committed conversion), run
examples/mnist_client.py over gRPC, publish version 2 into the base path, and see the error
rate fall, as the README shows it."""

import re
import shutil
import subprocess
import sys
import time

from conftest import ROOT, serve

CLIENT = ROOT / "examples" / "mnist_client.py"


def error_rate(server, num_tests=500):
    output = subprocess.run(
        [sys.executable, str(CLIENT), f"--num_tests={num_tests}", f"--server={server}", "--concurrency=4"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    match = re.search(r"Inference error rate: ([0-9.]+)%", output)
    assert match, output
    return float(match.group(1))


def served_version(server):
    """The version that answers a Predict on predict_images (the latest loaded)."""
    sys.path.insert(0, str(ROOT / "examples"))
    import mnist_client
    predict_pb2, service_grpc, tensor_pb2, shape_pb2, types_pb2 = mnist_client.load_stubs()
    import grpc
    stub = service_grpc.PredictionServiceStub(grpc.insecure_channel(server))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=shape_pb2.TensorShapeProto(dim=[shape_pb2.TensorShapeProto.Dim(size=1),
                                                     shape_pb2.TensorShapeProto.Dim(size=784)]),
        float_val=[0.0] * 784))
    return stub.Predict(request, timeout=10).model_spec.version.value


def test_error_rate_falls_when_version_2_arrives(tmp_path):
    base = tmp_path / "mnist"
    base.mkdir()
    shutil.copytree(ROOT / "models" / "mnist" / "1", base / "1")
    args = ["serve", "--model_name=mnist", f"--model_base_path={base}", "--model_platform=tensorflow",
            "--conversion_python=/nonexistent", "--file_system_poll_wait_seconds=1",
            "--grpc_address=127.0.0.1:0", "--rest_api_port=0"]
    with serve(args, "Running gRPC ModelServer at ") as server:
        first = error_rate(server)
        # Copy version 2 in next to version 1, as the tutorial does, and wait for it to serve.
        shutil.copytree(ROOT / "models" / "mnist" / "2", tmp_path / "staging")
        (tmp_path / "staging").rename(base / "2")
        deadline = time.monotonic() + 60
        while served_version(server) != 2:
            assert time.monotonic() < deadline, "version 2 did not become available within 60 s"
            time.sleep(0.1)
        second = error_rate(server)
    assert second < first, (first, second)
    assert second < 15.0, second
