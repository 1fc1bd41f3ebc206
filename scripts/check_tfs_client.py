#!/usr/bin/env python3
"""Hand check: TF Serving's own client package against a running onnx-serving.

Uses `tensorflow_serving.apis` from the PyPI package tensorflow-serving-api (which pulls in
tensorflow) exactly as TF Serving's MNIST tutorial client does: tf.make_tensor_proto, a
grpc.insecure_channel, Predict.future, and float_val on the way back.

    pip install tensorflow-serving-api==2.21.0
    onnx-serving --model_name=mnist --model_base_path=models/mnist_onnx &
    python3 scripts/check_tfs_client.py --server=localhost:8500

Not part of CI: tensorflow is a 600 MB install. tests/python covers the same calls with
grpcio and stubs generated from proto/.
"""
import argparse

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="localhost:8500")
    parser.add_argument("--model", default="mnist")
    args = parser.parse_args()
    channel = grpc.insecure_channel(args.server)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    image = np.zeros(784, dtype=np.float32)
    image[300:480] = 1.0
    request = predict_pb2.PredictRequest()
    request.model_spec.name = args.model
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(image, shape=[1, image.size]))
    result = stub.Predict.future(request, 5.0).result()
    scores = result.outputs["scores"].float_val
    print("Predict: argmax", int(np.argmax(scores)), "of", len(scores), "scores; model_spec", result.model_spec)
    print("tf.make_ndarray:", tf.make_ndarray(result.outputs["scores"]).shape)

    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = args.model
    response = stub.GetModelMetadata(metadata, 5.0)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    print("GetModelMetadata:", sorted(signatures.signature_def))

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = args.model
    print("GetModelStatus:", model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, 5.0))

    request.model_spec.name = "missing"
    try:
        stub.Predict(request, 5.0)
    except grpc.RpcError as error:
        print("Predict on a missing model:", error.code(), error.details())


if __name__ == "__main__":
    main()
