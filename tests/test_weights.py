"""Weights held once (onnx2snn/graph/weights.py): light protos with stubs, sessions fed in place, the
self-contained copies for files, and the >2 GB path (lowered limit)."""

import gc

import numpy as np
import onnx
import pytest

from graphs import cnn, inputs, run_ort
import onnx2snn
from onnx2snn import Config, ModelLoadError
from onnx2snn.graph import load, weights
from onnx2snn.simulation.runtime import make_session


@pytest.fixture(autouse=True)
def small_stubs(monkeypatch):
    """The test graphs' weights are small: store everything above 64 bytes."""
    monkeypatch.setattr(weights, "STUB_BYTES", 64)


def test_light_copy_runs_like_the_full_model_and_attaches_back():
    model, x = cnn(), inputs((2, 6, 6), n=5)
    store = weights.WeightStore()
    light = store.detach(model)
    assert light.ByteSize() < model.ByteSize() / 2 and store.nbytes > 0
    assert any(weights.is_stub(t) for t in light.graph.initializer)
    expected = run_ort(model, {"x": x})[0]
    got = make_session(light, Config()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, expected)
    full = weights.attach(light)
    assert not any(weights.is_stub(t) for t in full.graph.initializer)
    assert [t.name for t in full.graph.initializer] == [t.name for t in model.graph.initializer]
    onnx.checker.check_model(full, full_check=True)
    np.testing.assert_array_equal(run_ort(full, {"x": x})[0], expected)


def test_passes_read_stored_weights_and_export_stubs():
    model = cnn()
    store = weights.WeightStore()
    light = store.detach(model)
    normalized = load.normalize(light)
    assert any(weights.is_stub(t) for t in normalized.graph.initializer)
    np.testing.assert_array_equal(run_ort(weights.attach(normalized), {"x": inputs((2, 6, 6), n=3)})[0],
                                  run_ort(load.normalize(model), {"x": inputs((2, 6, 6), n=3)})[0])


def test_a_light_proto_without_its_store_says_what_to_do():
    light = weights.WeightStore().detach(cnn())
    gc.collect()
    with pytest.raises(ModelLoadError, match="no longer held"):
        weights.attach(light)


def test_conversion_and_saving_above_the_limit(tmp_path, monkeypatch):
    model, x = cnn(), inputs((2, 6, 6), n=40)
    expected = onnx2snn.convert(model, {"x": x}, Config(T=8)).snn
    monkeypatch.setattr(weights, "LIMIT", 1)  # every model is "large" now
    monkeypatch.setattr(weights, "STUB_BYTES", 100)  # and its weights go to external data
    result = onnx2snn.convert(model, {"x": x}, Config(T=8), data={"x": x})
    assert result.evaluation.agreement > 0.9
    out = onnx2snn.save_model(result.snn, tmp_path / "big.snn.onnx")
    assert (tmp_path / "big.snn.onnx.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.snn.onnx", "big.snn.onnx.data"]
    onnx.checker.check_model(str(out), full_check=True)
    loaded = onnx2snn.graph.load.load_model(out)
    np.testing.assert_allclose(run_ort(loaded, {"x": x})[0], run_ort(expected, {"x": x})[0], atol=1e-5)
    shapes = {v.name for v in onnx2snn.graph.load.infer_shapes(loaded).graph.value_info}
    assert shapes, "shape inference ran on the stubbed copy"
