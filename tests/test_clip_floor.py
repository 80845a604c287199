"""Clip-floor (QCFS) activations: fused into one ClipFloor node, converted with their trained theta."""

import numpy as np
import pytest

from graphs import GraphBuilder, inputs, run_ort
import onnx2snn
from onnx2snn import Config, UnsupportedModelError
from onnx2snn.graph import load
from onnx2snn.ops.clip_floor import OP_TYPE
from onnx2snn.graph.plan import make_plan
from onnx2snn.simulation.runtime import expose


def clip_floor(g: GraphBuilder, x: str, theta: float, levels: float, shift: float) -> str:
    """The chain torch exports for QCFS: theta / L * floor(clip(x / theta, 0, 1) * L + s)."""
    y = g.op("Div", [x, g.const(np.array([theta], np.float32))])
    y = g.op("Clip", [y, g.const(np.float32(0)), g.const(np.float32(1))])
    y = g.op("Mul", [y, g.const(np.float32(levels))])
    y = g.op("Add", [y, g.const(np.float32(shift))])
    y = g.op("Floor", [y])
    y = g.op("Div", [y, g.const(np.float32(levels))])
    return g.op("Mul", [y, g.const(np.array([theta], np.float32))])


def qcfs_net(levels=4, shift=0.5, readout=False):
    """Conv -> clip-floor -> Flatten -> Gemm -> clip-floor -> Gemm (-> clip-floor as a readout)."""
    g = GraphBuilder(seed=3)
    h = clip_floor(g, g.conv("x", 1, 4), 1.5, levels, shift)
    h = g.gemm(g.op("Flatten", [h]), 4 * 6 * 6, 12)
    h = g.gemm(clip_floor(g, h, 2.0, levels, shift), 12, 3)
    if readout:
        h = clip_floor(g, h, 1.0, levels, shift)
    out = g.op("Identity", [h])
    return g.model({"x": ["N", 1, 6, 6]}, {out: ["N", 3]})


def test_fusion_keeps_the_ann_bit_identical_and_plans_the_trained_threshold_and_shift():
    model, x = qcfs_net(shift=0.25), inputs((1, 6, 6), n=40)
    normal = load.normalize(model)
    assert [n.op_type for n in normal.graph.node].count(OP_TYPE) == 2
    assert "Floor" not in [n.op_type for n in normal.graph.node]
    np.testing.assert_array_equal(run_ort(normal, {"x": x})[0], run_ort(model, {"x": x})[0])
    layers = make_plan(normal).layers
    assert [(layer.op_type, layer.clip_max, layer.alpha) for layer in layers] == [
        (OP_TYPE, 1.5, 0.25), (OP_TYPE, 2.0, 0.25)]


def test_first_layer_at_T_equal_L_fires_exactly_the_clip_floor_values():
    """Constant current x, theta, v0 = s * theta, T = L steps: rate = theta/L clip(floor(Lx/theta + s), 0, L)."""
    model, x = qcfs_net(levels=4, shift=0.5), inputs((1, 6, 6), n=40)
    result = onnx2snn.convert(model, {"x": x}, Config(T=4, phase=1))
    first = result.plan.layers[0]
    assert result.params[first.name].source.startswith("trained clip")
    ann = run_ort(expose(result.ann, [first.output]), {"x": x})[1]
    spikes = run_ort(expose(result.snn, [first.output]), {"x": x})[1]
    np.testing.assert_allclose(spikes.reshape(4, *ann.shape).mean(axis=0), ann, rtol=0, atol=1e-6)
    assert ann.max() > 0 and len(np.unique(ann)) > 2  # the test sees several levels


def test_a_clip_floor_readout_is_written_back_in_standard_ops():
    model, x = qcfs_net(readout=True), inputs((1, 6, 6), n=20)
    result = onnx2snn.convert(model, {"x": x}, Config(T=4))
    assert len(result.plan.layers) == 2
    assert OP_TYPE not in [n.op_type for n in result.snn.graph.node]
    assert OP_TYPE not in [f.name for f in result.snn.functions]
    assert run_ort(result.snn, {"x": x})[0].shape == (20, 3)


@pytest.mark.parametrize("levels, shift, why", [(4, 1.0, "the shift s = 1 is not in"),
                                               (2.5, 0.5, "L = 2.5 is not an integer")])
def test_a_chain_that_is_not_a_clip_floor_is_refused_by_name(levels, shift, why):
    model = qcfs_net(levels=levels, shift=shift)
    with pytest.raises(UnsupportedModelError, match="Floor") as info:
        make_plan(load.normalize(model))
    assert why in str(info.value) and "Div(x, theta), Clip(0, 1)" in str(info.value)


def test_a_chain_scaled_by_a_mul_says_which_op_is_missing():
    """x * (1 / theta) instead of x / theta: refused at the Floor, naming the missing Div."""
    g = GraphBuilder(seed=3)
    h = g.op("Mul", [g.conv("x", 1, 4), g.const(np.array([1 / 1.5], np.float32))])
    h = g.op("Clip", [h, g.const(np.float32(0)), g.const(np.float32(1))])
    h = g.op("Floor", [g.op("Add", [g.op("Mul", [h, g.const(np.float32(4))]), g.const(np.float32(0.5))])])
    h = g.op("Mul", [g.op("Div", [h, g.const(np.float32(4))]), g.const(np.array([1.5], np.float32))])
    h = g.op("Relu", [g.gemm(g.op("Flatten", [h]), 4 * 6 * 6, 8)])  # a spiking layer after the Floor
    out = g.op("Identity", [g.gemm(h, 8, 3)])
    with pytest.raises(UnsupportedModelError, match="no Div\\(x, theta\\) in its place"):
        make_plan(load.normalize(g.model({"x": ["N", 1, 6, 6]}, {out: ["N", 3]})))


def test_a_floor_on_the_input_still_converts():
    """Input quantisation floor(x * 255) / 255 before the first layer runs once, on the analog input."""
    g = GraphBuilder(seed=3)
    x = g.op("Div", [g.op("Floor", [g.op("Mul", ["x", g.const(np.float32(255))])]), g.const(np.float32(255))])
    h = g.op("Relu", [g.conv(x, 1, 4)])
    out = g.op("Identity", [g.gemm(g.op("Flatten", [h]), 4 * 6 * 6, 3)])
    result = onnx2snn.convert(g.model({"x": ["N", 1, 6, 6]}, {out: ["N", 3]}), {"x": inputs((1, 6, 6), n=20)},
                              Config(T=4))
    assert len(result.plan.layers) == 1 and "Floor" in [n.op_type for n in result.snn.graph.node]
