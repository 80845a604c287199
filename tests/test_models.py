"""End to end on every shipped real model: the converted file is valid, runs in a plain
onnxruntime session, and at the default T = 16 its accuracy on the whole shipped test split is
within 1 point of the ANN's (T = 1 .. 32 for every model: docs/accuracy.md)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import MODELS
import onnx2snn

SHIPPED = sorted(p for p in MODELS.glob("*.onnx") if not p.name.endswith(".snn.onnx"))


def test_models_are_shipped_with_data():
    assert len(SHIPPED) >= 4
    for path in SHIPPED:
        assert path.with_suffix(".calib.npz").is_file() and path.with_suffix(".test.npz").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_end_to_end(path, tmp_path, converted):
    result = converted(path.stem, 16)
    out = onnx2snn.save_model(result.snn, tmp_path / "snn.onnx")
    onnx.checker.check_model(onnx.load(out), full_check=True)
    test = np.load(path.with_suffix(".test.npz"))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = test["x"][:8].astype(np.float32)
    scores = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert scores.shape[0] == 8 and np.isfinite(scores).all()
    ev = result.evaluation
    assert ev.samples == len(test["y"])
    assert ev.ann_accuracy - ev.snn_accuracy <= 0.01, (path.stem, ev)
