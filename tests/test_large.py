"""The >2 GB path (external data for sessions, shape inference and saving), exercised on a small
model by lowering the size limit."""

import numpy as np
import onnx

from graphs import cnn, inputs, run_ort
import onnx2snn
from onnx2snn import Config, large


def test_conversion_and_saving_above_the_limit(tmp_path, monkeypatch):
    model, x = cnn(), inputs((2, 6, 6), n=40)
    expected = onnx2snn.convert(model, {"x": x}, Config(T=8)).snn
    monkeypatch.setattr(large, "LIMIT", 1)  # every model is "large" now
    monkeypatch.setattr(large, "STUB_BYTES", 100)  # and its weights go to external data
    result = onnx2snn.convert(model, {"x": x}, Config(T=8), data={"x": x})
    assert result.evaluation.agreement > 0.9
    out = onnx2snn.save_model(result.snn, tmp_path / "big.snn.onnx")
    assert (tmp_path / "big.snn.onnx.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.snn.onnx", "big.snn.onnx.data"]
    onnx.checker.check_model(str(out), full_check=True)
    loaded = onnx2snn.load.load_model(out)
    np.testing.assert_allclose(run_ort(loaded, {"x": x})[0], run_ort(expected, {"x": x})[0], atol=1e-5)
    shapes = {v.name for v in onnx2snn.load.infer_shapes(loaded).graph.value_info}
    assert shapes, "shape inference ran on the stubbed copy"
