"""ANN -> SNN rewrite on small graphs: structure of the result, validity in plain onnxruntime,
cross-check against the numpy reference, and convergence to the ANN as T grows."""

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from graphs import GraphBuilder, cnn, inputs, mlp, run_ort
import onnx2snn
from onnx2snn import Config
from onnx2snn.ops import if_neuron
from onnx2snn.simulation.runtime import expose


def convert(model, x, **config):
    return onnx2snn.convert(model, {"x": x}, Config(**config))


def max_error(model, x, T, **config):
    snn = convert(model, x, T=T, percentile=100, phase=1, **config).snn
    return float(np.abs(onnx2snn.simulate(snn, x)["y"] - run_ort(model, {"x": x})[0]).max())


@pytest.mark.parametrize("build,shape", [(mlp, (8,)), (cnn, (2, 6, 6))])
def test_converges_to_the_ann_as_T_grows(build, shape):
    model, x = build(), inputs(shape, n=200)
    scale = float(np.abs(run_ort(model, {"x": x})[0]).max())
    errors = [max_error(model, x, T) for T in (16, 64, 256, 1024)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.005 * scale, errors


def test_structure_names_metadata_and_validity():
    model, x = cnn(), inputs((2, 6, 6), n=20)
    snn = convert(model, x, T=8).snn
    onnx.checker.check_model(snn, full_check=True)
    ifs = [n for n in snn.graph.node if n.op_type == if_neuron.OP_TYPE]
    relus = [n.name for n in onnx2snn.graph.load.normalize(model).graph.node if n.op_type == "Relu"]
    assert [n.name for n in ifs] == [f"{r}/if" for r in relus]
    assert all(n.domain == if_neuron.DOMAIN for n in ifs)
    tile = next(n for n in snn.graph.node if n.op_type == "Tile")
    assert tile.output[0] == ifs[0].input[0], "the first layer's constant current is computed once"
    meta = {p.key: p.value for p in snn.metadata_props}
    assert meta["onnx2snn.T"] == "8" and meta["onnx2snn.version"] == onnx2snn.__version__
    assert [o.name for o in snn.graph.output] == ["y"]
    y = run_ort(snn, {"x": x})[0]
    assert y.shape == (20, 3)


def test_the_record_in_the_metadata_is_what_was_built():
    """Readers of a saved SNN find the IF nodes, readouts and repeats in its record, and every
    name in it is a node or tensor of the graph."""
    from onnx2snn.graph import load
    from onnx2snn.graph.plan import make_plan
    from onnx2snn.snn.params import unit_params
    from onnx2snn.snn.rewrite import Record, build

    ann = load.normalize(cnn())
    plan = make_plan(ann)
    snn, record = build(ann, plan, unit_params(plan), 4)
    read = Record.read(snn)
    assert read is not None and read.to_json() == record.to_json()
    nodes = {n.name: n for n in snn.graph.node}
    tensors = {t for n in snn.graph.node for t in (*n.input, *n.output)}
    assert {nodes[record.neurons[layer.name]].op_type for layer in plan.layers} == {if_neuron.OP_TYPE}
    assert set(record.readouts) <= tensors and set(record.readouts.values()) <= tensors
    assert {nodes[n].op_type for n in record.readout_nodes if n in nodes} >= {"ReduceSum", "Mul"}
    assert all(nodes[n].op_type == "Tile" for n in nodes if nodes[n].output[0] in record.repeats)
    assert Record.read(ann) is None


def test_onnxruntime_spikes_match_the_numpy_reference_step_by_step():
    """Expose every IF layer's input current and spikes from onnxruntime, replay the currents
    through the numpy reference, and require identical spike trains."""
    model, x = cnn(), inputs((2, 6, 6), n=16)
    T = 8
    snn = convert(model, x, T=T).snn
    ifs = [n for n in snn.graph.node if n.op_type == if_neuron.OP_TYPE]
    names = [t for n in ifs for t in (n.input[0], n.output[0])]
    values = dict(zip(names, run_ort(expose(snn, names), {"x": x})[1:]))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in snn.graph.initializer}
    for n in ifs:
        spikes, _ = if_neuron.if_forward(values[n.input[0]], inits[n.input[1]], inits[n.input[2]], T)
        np.testing.assert_array_equal(spikes, values[n.output[0]])
        assert values[n.output[0]].shape[0] == T * len(x)


def test_reference_evaluator_agrees_with_onnxruntime():
    model, x = mlp(), inputs((8,), n=32)
    snn = convert(model, x, T=16).snn
    ort_y = run_ort(snn, {"x": x})[0]
    ref_y = ReferenceEvaluator(snn, new_ops=[if_neuron.IFNeuron]).run(None, {"x": x})[0]
    np.testing.assert_allclose(ref_y, ort_y, atol=1e-4)


def test_output_softmax_sees_the_averaged_logits():
    g = GraphBuilder()
    h = g.relu(g.gemm("x", 8, 16))
    logits = g.gemm(h, 16, 4)
    g.nodes.append(onnx.helper.make_node("Softmax", [logits], ["y"], name="softmax", axis=1))
    model, x = g.model({"x": ["N", 8]}, {"y": ["N", 4]}), inputs((8,), n=50)
    snn = convert(model, x, T=16).snn
    out = run_ort(expose(snn, [logits]), {"x": x})
    z = out[1] - out[1].max(axis=1, keepdims=True)
    np.testing.assert_allclose(out[0], np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), rtol=1e-5)


def test_trailing_relu_stays_analog():
    g = GraphBuilder()
    h = g.relu(g.gemm("x", 8, 16))
    g.nodes.append(onnx.helper.make_node("Relu", [g.gemm(h, 16, 4)], ["y"], name="out_relu"))
    model, x = g.model({"x": ["N", 8]}, {"y": ["N", 4]}), inputs((8,), n=50)
    result = convert(model, x, T=64)
    assert result.plan.readout_activations == ("out_relu",)
    assert [n.op_type for n in result.snn.graph.node].count(if_neuron.OP_TYPE) == 1
    assert (onnx2snn.simulate(result.snn, x)["y"] >= 0).all()


def residual_concat_pool_model():
    """Two branches with different scales, a residual Add, a Concat and a MaxPool between
    spiking layers."""
    g = GraphBuilder(seed=4)
    a = g.relu(g.conv("x", 2, 4))
    b = g.relu(g.op("Mul", [g.conv(a, 4, 4), g.const(np.float32(3.0))]))  # a larger-scale branch
    s = g.relu(g.op("Add", [g.conv(b, 4, 4), a]))
    c = g.op("Concat", [s, b], axis=1)
    p = g.op("MaxPool", [c], kernel_shape=[2, 2], strides=[2, 2])
    h = g.relu(g.conv(p, 8, 4))
    g.gemm(g.op("Flatten", [h], axis=1), 4 * 3 * 3, 3)
    g.nodes[-1].output[0] = "y"
    return g.model({"x": ["N", 2, 6, 6]}, {"y": ["N", 3]})


def test_residual_concat_and_maxpool_converge():
    model, x = residual_concat_pool_model(), inputs((2, 6, 6), n=100)
    scale = float(np.abs(run_ort(model, {"x": x})[0]).max())
    errors = [max_error(model, x, T) for T in (32, 256, 1024)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[-1] < 0.01 * scale, errors
