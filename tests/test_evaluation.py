"""Accuracy, agreement and firing rates."""

import numpy as np
import pytest

from graphs import inputs, mlp, run_ort
import onnx2snn
from onnx2snn import Config, DataError
from onnx2snn.data import from_arrays
from onnx2snn.evaluation import evaluate


def test_accuracy_agreement_and_rates_are_measured():
    model, x = mlp(), inputs((8,), n=120)
    labels = run_ort(model, {"x": x})[0].argmax(1)
    labels[:12] = (labels[:12] + 1) % 4  # the ANN is wrong on exactly 12 samples
    result = onnx2snn.convert(model, {"x": x}, Config(T=256, percentile=100))
    ev = evaluate(result.ann, result.snn, from_arrays({"x": x, "y": labels}, model), Config())
    assert ev.ann_accuracy == pytest.approx(108 / 120)
    assert ev.agreement >= 0.98
    assert abs(ev.snn_accuracy - ev.ann_accuracy) <= 0.02
    assert set(ev.firing_rates) == {layer.name for layer in result.plan.layers}
    assert all(0 < r < 1 for r in ev.firing_rates.values())


def test_firing_rate_counts_spikes_exactly():
    model, x = mlp(widths=(8, 16, 4)), inputs((8,), n=10)
    result = onnx2snn.convert(model, {"x": x}, Config(T=8))
    from onnx2snn.runtime import expose
    name = result.plan.layers[0].output
    spikes = run_ort(expose(result.snn, [name]), {"x": x})[1]
    ev = evaluate(result.ann, result.snn, from_arrays({"x": x}, model), Config(batch_size=3))
    assert ev.firing_rates[result.plan.layers[0].name] == pytest.approx(float((spikes > 0).mean()))


def test_a_model_without_if_neurons_compares_like_any_other():
    model, x = mlp(), inputs((8,), n=20)
    ev = evaluate(model, model, from_arrays({"x": x}, model), Config(batch_size=7))
    assert ev.agreement == 1.0 and ev.output_rmse == 0.0 and ev.firing_rates == {}


def test_labels_out_of_range_or_negative():
    model, x = mlp(), inputs((8,), n=10)
    result = onnx2snn.convert(model, {"x": x}, Config(T=4))
    with pytest.raises(DataError, match="out of range"):
        evaluate(result.ann, result.snn, from_arrays({"x": x, "y": np.full(10, 7)}, model), Config())
    with pytest.raises(DataError, match="class indices"):
        evaluate(result.ann, result.snn, from_arrays({"x": x, "y": np.full(10, -1)}, model), Config())


def test_float_targets_on_a_classifier_are_refused():
    model, x = mlp(), inputs((8,), n=10)
    result = onnx2snn.convert(model, {"x": x}, Config(T=4))
    with pytest.raises(DataError, match="integer class indices"):
        evaluate(result.ann, result.snn, from_arrays({"x": x, "y": np.full(10, 0.5)}, model), Config())


def test_single_output_is_a_regression_with_r2():
    model, x = mlp(widths=(8, 16, 1)), inputs((8,), n=200)
    y = run_ort(model, {"x": x})[0][:, 0] + 0.01
    result = onnx2snn.convert(model, {"x": x}, Config(T=64))
    ev = evaluate(result.ann, result.snn, from_arrays({"x": x, "y": y}, model), Config())
    assert ev.task == "regression" and ev.agreement is None and ev.ann_accuracy is None
    assert ev.ann_r2 > 0.99 and ev.snn_r2 > 0.9 and ev.output_rmse < 0.2
