"""Rate boundaries (onnx2snn/ops/boundary.py): LRN between spiking layers runs on the rates, its
output drives the next layers as a constant current; other ops on request."""

import numpy as np
import onnx
import pytest

from graphs import inputs, lrn_cnn, run_ort
import onnx2snn
from onnx2snn import Config, UnsupportedModelError
from onnx2snn.graph import load
from onnx2snn.graph.plan import make_plan
from onnx2snn.ops.if_neuron import DOMAIN


def test_lrn_is_a_rate_boundary():
    model = load.normalize(lrn_cnn())
    plan = make_plan(model)
    (lrn,) = plan.boundaries
    node = next(n for n in model.graph.node if n.name == lrn)
    assert node.op_type == "LRN" and node.output[0] not in plan.dynamic and lrn not in plan.time_batched
    assert plan.layers[1].current not in plan.time_major  # the next layer sees a constant current


def test_the_boundary_computes_the_op_on_the_rates():
    """In the converted model the LRN reads the mean over T of the first layer's spikes, and
    every layer after it converges to the ANN as T grows."""
    x = inputs((2, 8, 8), n=64, seed=3)
    model = lrn_cnn()
    errors = {}
    for T in (4, 32):
        r = onnx2snn.convert(model, {"x": x}, Config(T=T), data={"x": x})
        assert "onnx2snn.rate_boundaries" in {p.key for p in r.snn.metadata_props}
        onnx.checker.check_model(r.snn, full_check=True)
        lrn = next(n for n in r.snn.graph.node if n.op_type == "LRN")
        assert lrn.input[0].endswith("/rate")  # the mean over T of the spike train
        errors[T] = r.evaluation.output_rel_error
        assert r.evaluation.agreement >= 0.8
    assert errors[32] < errors[4]
    ann = run_ort(model, {"x": x})[0]
    snn = run_ort(r.snn, {"x": x})[0]
    assert np.corrcoef(ann.ravel(), snn.ravel())[0, 1] > 0.95


def test_other_ops_only_on_request():
    """A Sigmoid between spiking layers is refused, unless named with rate_boundary."""
    from graphs import GraphBuilder

    g = GraphBuilder()
    h = g.op("Sigmoid", [g.relu(g.conv("x", 2, 4))])
    h = g.relu(g.conv(h, 4, 4))
    h = g.op("Flatten", [g.op("GlobalAveragePool", [h])], axis=1)
    g.gemm(h, 4, 3)
    g.nodes[-1].output[0] = "y"
    model = g.model({"x": ["N", 2, 6, 6]}, {"y": ["N", 3]})
    x = inputs((2, 6, 6), n=32)
    with pytest.raises(UnsupportedModelError, match="Sigmoid"):
        onnx2snn.convert(model, {"x": x}, Config(T=4))
    r = onnx2snn.convert(model, {"x": x}, Config(T=16, rate_boundary="Sigmoid"), data={"x": x})
    assert len(r.plan.boundaries) == 1 and r.evaluation.agreement > 0.8
    assert sum(n.domain == DOMAIN for n in r.snn.graph.node) == 2


def test_the_report_lists_the_boundaries(tmp_path, capsys):
    import json

    from onnx2snn.cli import main

    onnx.save(lrn_cnn(), tmp_path / "m.onnx")
    np.savez(tmp_path / "m.calib.npz", x=inputs((2, 8, 8), n=32))
    assert main([str(tmp_path / "m.onnx"), "-T", "8", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["rate_boundaries"]) == 1 and report["warnings"] == []
    assert report["energy"]["snn_macs"] > 0  # the first layer and the one after the boundary
