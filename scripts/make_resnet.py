#!/usr/bin/env python3
"""Generate a ResNet-18 ONNX model with random weights, for the batching benchmark.

The network is ResNet-18 as in torchvision (11.7 M parameters, 44 MB of float32 weights:
real weight sizes), exported here with onnx.helper instead of torch so that no PyTorch
install is needed. It takes [batch, 3, 64, 64] float images (a smaller input than ImageNet's
224, so that one image costs a few milliseconds on one CPU core) and returns [batch, 1000]
logits. Weights are He-initialised from a fixed seed, so the file is reproducible.

The model is too large to commit; benches/batching_load.rs runs this script when the file
is missing:

    pip install -r scripts/requirements.txt
    python3 scripts/make_resnet.py target/bench-models/resnet18/1/model.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 64
rng = np.random.default_rng(18)
nodes, inits = [], []


def weight(name, shape, fan_in):
    inits.append(numpy_helper.from_array((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name))
    return name


def conv_bn(x, name, cin, cout, k, stride, relu=True):
    w = weight(f"{name}.w", (cout, cin, k, k), cin * k * k)
    nodes.append(helper.make_node("Conv", [x, w], [f"{name}.conv"], kernel_shape=[k, k], strides=[stride, stride],
                                  pads=[k // 2] * 4, name=f"{name}.conv"))
    scale = numpy_helper.from_array(np.ones(cout, np.float32), f"{name}.scale")
    bias = numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.bias")
    mean = numpy_helper.from_array((rng.standard_normal(cout) * 0.01).astype(np.float32), f"{name}.mean")
    var = numpy_helper.from_array(np.ones(cout, np.float32), f"{name}.var")
    inits.extend([scale, bias, mean, var])
    out = f"{name}.bn"
    nodes.append(helper.make_node("BatchNormalization", [f"{name}.conv", scale.name, bias.name, mean.name, var.name],
                                  [out], name=f"{name}.bn"))
    if relu:
        nodes.append(helper.make_node("Relu", [out], [f"{name}.relu"], name=f"{name}.relu"))
        out = f"{name}.relu"
    return out


def basic_block(x, name, cin, cout, stride):
    y = conv_bn(x, f"{name}.a", cin, cout, 3, stride)
    y = conv_bn(y, f"{name}.b", cout, cout, 3, 1, relu=False)
    shortcut = x if stride == 1 and cin == cout else conv_bn(x, f"{name}.down", cin, cout, 1, stride, relu=False)
    nodes.append(helper.make_node("Add", [y, shortcut], [f"{name}.sum"], name=f"{name}.sum"))
    nodes.append(helper.make_node("Relu", [f"{name}.sum"], [f"{name}.out"], name=f"{name}.out"))
    return f"{name}.out"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_path = sys.argv[1]
    x = conv_bn("images", "stem", 3, 64, 7, 2)
    nodes.append(helper.make_node("MaxPool", [x], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = "pool", 64
    for stage, (cout, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)]):
        x = basic_block(x, f"layer{stage + 1}.0", cin, cout, stride)
        x = basic_block(x, f"layer{stage + 1}.1", cout, cout, 1)
        cin = cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["features"], axis=1))
    fc_w = numpy_helper.from_array((rng.standard_normal((512, 1000)) * np.sqrt(1.0 / 512)).astype(np.float32), "fc.w")
    fc_b = numpy_helper.from_array(np.zeros(1000, np.float32), "fc.b")
    inits.extend([fc_w, fc_b])
    nodes.append(helper.make_node("Gemm", ["features", "fc.w", "fc.b"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "resnet18",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx-serving/scripts/make_resnet.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    params = sum(int(np.prod(i.dims)) for i in inits)
    print(f"wrote {out_path}: {params / 1e6:.1f} M parameters, {os.path.getsize(out_path) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
