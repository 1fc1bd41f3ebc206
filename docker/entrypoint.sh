#!/bin/sh
# The container entrypoint, as tensorflow/serving's: serve $MODEL_NAME from
# $MODEL_BASE_PATH/$MODEL_NAME on gRPC 8500 and REST 8501; extra arguments are passed on.
set -eu
exec onnx-serving --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" \
  ${ONNX_SERVING_EXTRA_ARGS:-} "$@"
