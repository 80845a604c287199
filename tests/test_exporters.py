"""Models really produced by other exporters (models/exporters, made by tools/export_variants.py):
torch.onnx dynamo (external weights, folded BN, opset 18+), tf2onnx from Keras (NHWC input,
Transpose, run-time flatten shape) and skl2onnx (MatMul+Add layers,
ai.onnx.ml Scaler and tail, label/probabilities outputs, ZipMap on and off, a regressor)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import MODELS
import onnx2snn
from onnx2snn import Config

EXPORTERS = MODELS / "exporters"
CLASSIFIERS = ["digits_cnn_dynamo", "digits_resnet_dynamo", "digits_keras", "digits_sklearn", "digits_sklearn_zipmap"]


def convert(name, T=32):
    path = EXPORTERS / f"{name}.onnx"
    return onnx2snn.convert(path, path.with_suffix(".calib.npz"), Config(T=T), data=path.with_suffix(".test.npz"))


def session(model, tmp_path):
    out = onnx2snn.save_model(model, tmp_path / "snn.onnx")
    onnx.checker.check_model(str(out), full_check=True)
    return ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_converts_within_one_point(name, tmp_path):
    result = convert(name)
    ev = result.evaluation
    assert ev.ann_accuracy - ev.snn_accuracy <= 0.01 and ev.agreement >= 0.98, ev
    test = np.load(EXPORTERS / f"{name}.test.npz")
    sess = session(result.snn, tmp_path)
    outs = sess.run(None, {sess.get_inputs()[0].name: test["x"][:50].astype(np.float32)})
    assert len(outs) == len(result.ann.graph.output)


def test_dynamo_export_uses_external_data():
    assert (EXPORTERS / "digits_cnn_dynamo.onnx.data").is_file()
    model = onnx.load(EXPORTERS / "digits_cnn_dynamo.onnx", load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


@pytest.mark.parametrize("name", ["digits_sklearn", "digits_sklearn_zipmap"])
def test_sklearn_label_output_is_right(name, tmp_path):
    result = convert(name, T=16)
    test = np.load(EXPORTERS / f"{name}.test.npz")
    sess = session(result.snn, tmp_path)
    x = test["x"].astype(np.float32)
    label, probabilities = sess.run(None, {"X": x})
    if isinstance(probabilities, list):  # ZipMap: one {class: probability} dict per sample
        probabilities = np.array([[p[k] for k in sorted(p)] for p in probabilities])
    np.testing.assert_array_equal(label, probabilities.argmax(axis=1))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (label == test["y"]).mean() >= result.evaluation.ann_accuracy - 0.02


def test_sklearn_regressor():
    result = convert("diabetes_sklearn_regressor")
    ev = result.evaluation
    assert ev.task == "regression" and ev.agreement is None
    assert abs(ev.snn_r2 - ev.ann_r2) <= 0.05, ev
