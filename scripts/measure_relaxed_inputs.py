"""Does an ONNX graph whose inputs and outputs declare no shape (what the converter writes for
TF's rank leniency) run slower under ONNX Runtime than the same graph with declared shapes?
Converts two Keras models with python/savedmodel_to_onnx.py, then times both on one intra-op
thread in interleaved rounds (medians), and counts the nodes of each graph after optimisation.

    <convert-venv>/bin/python scripts/measure_relaxed_inputs.py [WORKDIR]
"""
import os, sys, subprocess, time, statistics, json
import numpy as np
import onnx, onnxruntime as ort

CONVERTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "savedmodel_to_onnx.py")

def session(path, dump=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if dump:
        so.optimized_model_filepath = dump
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

def main():
    import tensorflow as tf
    root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/relaxed-inputs"
    os.makedirs(root, exist_ok=True)
    models = {
        "mobilenet_v2": lambda: tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)),
        "dense_mlp": lambda: tf.keras.Sequential([tf.keras.Input((784,)), tf.keras.layers.Dense(512, activation="relu"),
                                                   tf.keras.layers.Dense(512, activation="relu"), tf.keras.layers.Dense(10)]),
    }
    results = {}
    for name, build in models.items():
        sm = f"{root}/{name}_sm"
        if not os.path.exists(f"{sm}/saved_model.pb"):
            model = build()
            model.export(sm) if hasattr(model, "export") else tf.saved_model.save(model, sm)
        files = {}
        for label, extra in (("declared", ["--keep_declared_shapes"]), ("relaxed", [])):
            conv = f"{root}/{name}_{label}_onnx"
            if not os.path.exists(f"{conv}/manifest.json"):
                subprocess.check_call([sys.executable, CONVERTER, f"--saved_model_dir={sm}", f"--output_dir={conv}"]
                                      + extra)
            manifest = json.load(open(f"{conv}/manifest.json"))
            sig = manifest["signatures"].get("serving_default") or next(iter(manifest["signatures"].values()))
            files[label] = f"{conv}/{sig['file']}"
        declared, relaxed = files["declared"], files["relaxed"]
        sd = session(declared, f"{root}/{name}_declared_opt.onnx")
        sr = session(relaxed, f"{root}/{name}_relaxed_opt.onnx")
        inp = sd.get_inputs()[0]
        shape = [1 if (d is None or isinstance(d, str)) else d for d in inp.shape]
        x = np.random.rand(*shape).astype(np.float32)
        feed = {inp.name: x}
        a = sd.run(None, feed)[0]; b = sr.run(None, feed)[0]
        assert np.allclose(a, b, atol=1e-5)
        rounds = {"declared": [], "relaxed": []}
        n = 20 if name == "mobilenet_v2" else 2000
        for _ in range(7):
            for label, s in (("declared", sd), ("relaxed", sr)):
                t = time.perf_counter()
                for _ in range(n):
                    s.run(None, feed)
                rounds[label].append((time.perf_counter() - t) / n * 1e6)
        nodes = {label: len(onnx.load(f"{root}/{name}_{label}_opt.onnx").graph.node) for label in ("declared", "relaxed")}
        med = {k: statistics.median(v) for k, v in rounds.items()}
        results[name] = {"median_us": med, "ratio": med["relaxed"] / med["declared"], "optimized_nodes": nodes,
                         "input": inp.name, "declared_shape": inp.shape}
        print(name, results[name], flush=True)
    json.dump(results, open(f"{root}/results.json", "w"), indent=1)

main()
