"""Accuracy, agreement and firing rates."""

import numpy as np
import pytest

from graphs import inputs, mlp, run_ort
import onnx2snn
from onnx2snn import Config, DataError
from onnx2snn.data import from_arrays
from onnx2snn.simulation.evaluation import evaluate


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
    from onnx2snn.simulation.runtime import expose
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


def test_scores_with_unit_trailing_axes_are_classes(tmp_path):
    """A classifier whose scores are [N, C, 1, 1] (Caffe-style exports): accuracy and agreement
    as for [N, C], found without --score-output, and --score-output naming it works too."""
    import onnx2snn
    from graphs import cnn
    from onnx import helper, TensorProto

    model = cnn()
    out = model.graph.output[0]
    model.graph.node.append(helper.make_node("Unsqueeze", [out.name, "axes23"], ["y4"]))
    model.graph.initializer.append(helper.make_tensor("axes23", TensorProto.INT64, [2], [2, 3]))
    model.graph.output.append(helper.make_tensor_value_info("y4", TensorProto.FLOAT, ["N", 3, 1, 1]))
    del model.graph.output[0]
    x = inputs((2, 6, 6), n=30)
    labels = np.arange(30) % 3
    for score in (None, "y4"):
        r = onnx2snn.convert(model, {"x": x}, Config(T=4), data={"x": x, "y": labels}, score_output=score)
        assert r.evaluation.task == "classification" and r.evaluation.agreement > 0.5
        assert r.evaluation.ann_accuracy is not None


def test_a_feature_map_output_is_compared_as_a_whole():
    """An output that is neither classes nor one value per sample: no accuracy, the fidelity figures."""
    import onnx2snn
    from graphs import GraphBuilder

    g = GraphBuilder()
    h = g.relu(g.conv("x", 2, 4))
    g.conv(h, 4, 3)
    g.nodes[-1].output[0] = "y"
    model = g.model({"x": ["N", 2, 6, 6]}, {"y": ["N", 3, 6, 6]})
    x = inputs((2, 6, 6), n=20)
    r = onnx2snn.convert(model, {"x": x}, Config(T=8), data={"x": x})
    ev = r.evaluation
    assert ev.task == "output" and ev.agreement is None and ev.output_rel_error < 0.5 and ev.output_cosine > 0.8


def test_labels_out_of_range_are_refused_before_any_work():
    import onnx2snn
    from graphs import cnn

    x = inputs((2, 6, 6), n=10)
    with pytest.raises(DataError, match="out of range"):
        onnx2snn.convert(cnn(), {"x": x}, Config(T=2), data={"x": x, "y": np.full(10, 7)})


def test_a_failing_comparison_keeps_the_conversion(tmp_path, monkeypatch, capsys):
    """The SNN is written, the report says why the comparison failed, exit status 3."""
    import json
    import shutil

    from conftest import MODELS
    from onnx2snn.simulation import evaluation
    from onnx2snn.cli import main

    for suffix in (".onnx", ".calib.npz", ".test.npz"):
        shutil.copy(MODELS / f"digits_mlp{suffix}", tmp_path / f"m{suffix}")

    def broken(*args, **kwargs):
        raise RuntimeError("onnxruntime refused the session")
    monkeypatch.setattr(evaluation, "evaluate", broken)
    assert main([str(tmp_path / "m.onnx"), "-T", "4", "--json", "-q"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert "onnxruntime refused the session" in report["evaluation_error"]
    assert any("comparison on the test data failed" in w for w in report["warnings"])
    assert (tmp_path / "m.snn.onnx").is_file() and report["snn_accuracy"] is None


def test_fidelity_of_a_silent_snn_is_not_a_perfect_cosine():
    """An SNN whose output stays 0 against a nonzero ANN output: relative error 1, cosine 0."""
    from onnx2snn.simulation.evaluation import _fidelity
    ann = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    f = _fidelity(ann, np.zeros_like(ann))
    assert f["output_rel_error"] == pytest.approx(1.0) and f["output_cosine"] == 0.0
    assert _fidelity(np.zeros_like(ann), np.zeros_like(ann))["output_cosine"] == 1.0
    assert _fidelity(ann, 2 * ann)["output_cosine"] == pytest.approx(1.0)
