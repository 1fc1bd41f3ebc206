# onnx-serving on CPU. Build: docker build -t onnx-serving .
# Run:  docker run -p 8500:8500 -p 8501:8501 -v "$PWD/models/mnist_onnx:/models/mnist" -e MODEL_NAME=mnist onnx-serving

# 1. Build the binary. protox compiles the protos, so no protoc is needed.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin onnx-serving

# 2. Take ONNX Runtime's shared library from its PyPI wheel; nothing is downloaded at build time of the binary.
FROM python:3.11-slim-bookworm AS onnxruntime
RUN pip install --no-cache-dir --no-deps --target /wheel onnxruntime==1.31.1 \
 && mkdir -p /ort \
 && cp /wheel/onnxruntime/capi/libonnxruntime.so.1.31.1 /ort/

# 3. The runtime image: the binary, the library, a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20230311* libstdc++6=12.2.0* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin serving \
 && mkdir -p /models
COPY --from=build /src/target/release/onnx-serving /usr/local/bin/onnx-serving
COPY --from=onnxruntime /ort/libonnxruntime.so.1.31.1 /usr/local/lib/onnxruntime/libonnxruntime.so.1.31.1
COPY docker/entrypoint.sh /usr/local/bin/tf_serving_entrypoint.sh
ENV ORT_DYLIB_PATH=/usr/local/lib/onnxruntime/libonnxruntime.so.1.31.1 \
    MODEL_BASE_PATH=/models \
    MODEL_NAME=model
USER 10001:10001
EXPOSE 8500 8501
ENTRYPOINT ["/usr/local/bin/tf_serving_entrypoint.sh"]
