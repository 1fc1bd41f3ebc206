#!/usr/bin/env python3
"""Generate the scikit-learn fixtures: a logistic regression on iris exported by skl2onnx with
its default ZipMap (output_probability is a sequence of maps, class -> probability) and with
zipmap=False (a [batch, 3] float tensor). They test non-tensor outputs on the onnx platform.

    pip install scikit-learn==1.9.1 skl2onnx==1.19.1 onnx==1.23.2 onnxruntime==1.31.1
    python3 scripts/make_sklearn_models.py

Writes tests/fixtures/iris_zipmap/1/model.onnx and tests/fixtures/iris_tensor/1/model.onnx.
"""
import os

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    model = LogisticRegression(max_iter=500, random_state=0).fit(x, y)
    for name, options in (("iris_zipmap", None), ("iris_tensor", {"zipmap": False})):
        onx = to_onnx(model, x[:1], options={id(model): options} if options else None, target_opset=15)
        path = os.path.join(ROOT, f"tests/fixtures/{name}/1/model.onnx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(onx.SerializeToString())
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        labels, probabilities = session.run(None, {"X": x[:2]})
        expected = model.predict_proba(x[:2])
        rows = [[row[k] for k in sorted(row)] for row in probabilities] if options is None else probabilities
        np.testing.assert_allclose(np.array(rows), expected, rtol=1e-4)
        print(path, [o.name for o in session.get_outputs()], labels)


if __name__ == "__main__":
    main()
