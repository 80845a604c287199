"""Support check and region planning."""

import numpy as np
import onnx
import pytest

from graphs import GraphBuilder, cnn
from onnx2snn import UnsupportedModelError
from onnx2snn.graph import load
from onnx2snn.graph.plan import make_plan


def test_cnn_plan_regions():
    plan = make_plan(load.normalize(cnn()))
    assert [layer.op_type for layer in plan.layers] == ["Relu", "Relu"]
    first, second = plan.layers
    assert first.current not in plan.dynamic, "the first layer's current does not depend on spikes"
    assert second.current in plan.dynamic and second.current in plan.time_major
    assert any(n.startswith("conv") for n in plan.time_batched)
    assert not any(n.startswith("gemm") for n in plan.time_batched), "the output layer reads rates"


def test_every_unsupported_activation_is_reported_at_once():
    g = GraphBuilder()
    h = g.op("Sigmoid", [g.gemm("x", 4, 8)])
    h = g.relu(g.gemm(h, 8, 8))
    h = g.op("Tanh", [g.gemm(h, 8, 8)])
    h = g.op("LeakyRelu", [g.gemm(h, 8, 8)], alpha=0.1)
    g.gemm(h, 8, 2)
    g.nodes[-1].output[0] = "y"
    model = g.model({"x": ["N", 4]}, {"y": ["N", 2]})
    with pytest.raises(UnsupportedModelError) as info:
        make_plan(load.normalize(model))
    ops = sorted(op for _, op, _, _ in info.value.problems)
    assert ops == ["LeakyRelu", "Sigmoid", "Tanh"]
    text = str(info.value)
    assert "sigmoid" in text and "tanh" in text and "retrain" in text


def test_model_without_relu_is_refused_with_its_own_message():
    g = GraphBuilder()
    g.gemm("x", 4, 2)
    g.nodes[-1].output[0] = "y"
    with pytest.raises(UnsupportedModelError, match="no ReLU"):
        make_plan(load.normalize(g.model({"x": ["N", 4]}, {"y": ["N", 2]})))


def test_nonlinear_op_between_spiking_layers_is_refused():
    g = GraphBuilder()
    a = g.relu(g.gemm("x", 4, 8))
    h = g.op("Mul", [a, a])  # product of two spike trains
    g.gemm(g.relu(g.gemm(h, 8, 8)), 8, 2)
    g.nodes[-1].output[0] = "y"
    with pytest.raises(UnsupportedModelError, match="product of two") as info:
        make_plan(load.normalize(g.model({"x": ["N", 4]}, {"y": ["N", 2]})))
    assert info.value.problems[0][1] == "Mul"


def test_clip_relu6_and_max_become_spiking_layers_with_trained_max():
    g = GraphBuilder()
    h = g.op("Clip", [g.gemm("x", 4, 8), g.const(np.float32(0)), g.const(np.float32(6))])
    h = g.op("Max", [g.gemm(h, 8, 8), g.const(np.float32(0))])
    h = g.op("LeakyRelu", [g.gemm(h, 8, 8)], alpha=0.0)
    g.gemm(h, 8, 2)
    g.nodes[-1].output[0] = "y"
    plan = make_plan(load.normalize(g.model({"x": ["N", 4]}, {"y": ["N", 2]})))
    assert [(layer.op_type, layer.clip_max) for layer in plan.layers] == [
        ("Clip", 6.0), ("Max", None), ("LeakyRelu", None)]


def test_clip_with_negative_floor_is_refused():
    g = GraphBuilder()
    h = g.op("Clip", [g.gemm("x", 4, 8), g.const(np.float32(-1)), g.const(np.float32(1))])
    g.gemm(h, 8, 2)
    g.nodes[-1].output[0] = "y"
    with pytest.raises(UnsupportedModelError, match="lower bound of exactly 0"):
        make_plan(load.normalize(g.model({"x": ["N", 4]}, {"y": ["N", 2]})))


def test_output_head_activations_are_allowed():
    g = GraphBuilder()
    h = g.relu(g.gemm("x", 4, 8))
    g.nodes.append(onnx.helper.make_node("Sigmoid", [g.gemm(h, 8, 2)], ["y"], name="head"))
    plan = make_plan(load.normalize(g.model({"x": ["N", 4]}, {"y": ["N", 2]})))
    assert len(plan.layers) == 1
