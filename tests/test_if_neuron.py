"""IFNeuron: numpy reference vs explicit step loop vs the ONNX function body in onnxruntime and in
onnx.reference, for several T, opsets and threshold shapes."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from graphs import run_ort
from onnx2snn.snn.unrolled import FORMS, unroll
from onnx2snn.ops import if_neuron


def one_node_model(T, theta, v0, step_shape, opset, reset="subtract"):
    node = if_neuron.make_node("if", "X", "theta", "v0", "Y", T, "V", reset=reset)
    graph = helper.make_graph(
        [node], "if",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["TB", *step_shape[1:]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["TB", *step_shape[1:]]),
         helper.make_tensor_value_info("V", TensorProto.FLOAT, ["B", *step_shape[1:]])],
        [numpy_helper.from_array(theta, "theta"), numpy_helper.from_array(v0, "v0")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return if_neuron.install(model, T, reset)


def step_loop(x, theta, v0, T, reset="subtract"):
    """The neuron written as the textbook loop over time steps (reset by subtraction, or to zero
    firing on u > theta)."""
    steps = x.reshape(T, -1, *x.shape[1:])
    v = np.broadcast_to(v0, steps.shape[1:]).astype(np.float32)
    spikes = []
    for t in range(T):
        u = v + steps[t]
        fired = u > theta if reset == "zero" else u >= theta
        s = np.where(fired, theta, np.float32(0)).astype(np.float32)
        v = np.where(fired, np.float32(0), u) if reset == "zero" else u - s
        spikes.append(s)
    return np.concatenate(spikes), v


CASES = [
    (1, 13, np.float32(1.0), (3, 4)),
    (4, 17, np.float32(0.7), (3, 4)),
    (8, 18, np.array([0.5, 1.0, 2.0], np.float32).reshape(3, 1), (3, 4)),
    (16, 21, np.array([0.5, 1.0], np.float32).reshape(2, 1, 1), (2, 3, 3)),
]


@pytest.mark.parametrize("T,opset,theta,shape", CASES)
def test_function_body_matches_reference_exactly(T, opset, theta, shape):
    rng = np.random.default_rng(T)
    B = 5
    v0 = (0.5 * theta * np.ones(shape, np.float32)).astype(np.float32)
    v0 = v0 + rng.uniform(-0.1, 0.1, size=shape).astype(np.float32)  # per-neuron v(0)
    x = rng.normal(0.3, 1.0, size=(T * B, *shape)).astype(np.float32)
    model = one_node_model(T, np.asarray(theta, np.float32), v0, (B, *shape), opset)
    onnx.checker.check_model(model, full_check=True)
    y_loop, v_loop = step_loop(x, theta, v0, T)
    y_ref, v_ref = if_neuron.if_forward(x, theta, v0, T)
    y_ort, v_ort = run_ort(model, {"X": x})
    y_ort_noopt, _ = run_ort(model, {"X": x}, optimize=False)
    y_eval, v_eval = ReferenceEvaluator(model, new_ops=[if_neuron.IFNeuron]).run(None, {"X": x})
    y_body, _ = ReferenceEvaluator(model).run(None, {"X": x})  # the function body, in numpy
    for y in (y_ref, y_ort, y_ort_noopt, y_eval, y_body):
        np.testing.assert_array_equal(y, y_loop)
    for v in (v_ref, v_ort, v_eval):
        np.testing.assert_array_equal(v, v_loop)
    assert set(np.unique(y_ort / np.broadcast_to(theta, y_ort.shape[1:]))) <= {0.0, 1.0}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("T,opset,theta,shape", CASES)
def test_standard_op_forms_match_the_loop_exactly(T, opset, theta, shape, form):
    """The lowered forms (step by step, Scan over the steps) give the loop's spikes and final
    potential bit for bit, in onnxruntime and in onnx.reference, for any batch size."""
    v0 = np.full(shape, 0.4, np.float32) * np.asarray(theta, np.float32)
    model = unroll(one_node_model(T, np.asarray(theta, np.float32), v0, (2, *shape), opset), form)
    onnx.checker.check_model(model, full_check=True)
    assert not model.functions and {n.domain for n in model.graph.node} == {""}
    for B in (1, 6):
        x = np.random.default_rng(B).normal(0.3, 1.0, size=(T * B, *shape)).astype(np.float32)
        y_loop, v_loop = step_loop(x, theta, v0, T)
        for y, v in (run_ort(model, {"X": x}), ReferenceEvaluator(model).run(None, {"X": x})):
            np.testing.assert_array_equal(y, y_loop)
            np.testing.assert_array_equal(v, v_loop)


@pytest.mark.parametrize("form", FORMS)
def test_lowered_forms_read_a_tiled_constant_current_directly(form):
    """Direct encoding: IFNeuron(Tile(Z, [T, 1, 1])) lowers to a loop reading Z at every step, with
    the loop's exact spikes; a Tile whose repeats are not known constants stays."""
    T, shape, theta = 4, (3, 4), np.float32(0.7)
    v0 = np.full(shape, 0.3, np.float32)
    model = one_node_model(T, theta, v0, (2, *shape), 17)
    model.graph.node.insert(0, helper.make_node("Tile", ["Z", "repeats"], ["X"]))
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["B", *shape]))
    model.graph.initializer.append(numpy_helper.from_array(np.array([T, 1, 1], np.int64), "repeats"))
    lowered = unroll(model, form)
    onnx.checker.check_model(lowered, full_check=True)
    assert not any(n.op_type == "Tile" for n in lowered.graph.node)
    z = np.random.default_rng(0).normal(0.3, 1.0, size=(5, *shape)).astype(np.float32)
    y_loop, v_loop = step_loop(np.tile(z, (T, 1, 1)), theta, v0, T)
    y, v = run_ort(lowered, {"Z": z})
    np.testing.assert_array_equal(y, y_loop)
    np.testing.assert_array_equal(v, v_loop)
    model.graph.input.append(helper.make_tensor_value_info("R", TensorProto.INT64, [3]))
    model.graph.node[0].input[1] = "R"
    assert any(n.op_type == "Tile" for n in unroll(model, form).graph.node)


def test_scan_form_keeps_a_double_model_in_double():
    """The Scan body casts spikes to the threshold's type, as CastLike does in the function."""
    T, shape = 4, (3,)
    model = one_node_model(T, np.float64(0.7), np.full(shape, 0.3), (2, *shape), 17)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.elem_type = TensorProto.DOUBLE
    lowered = unroll(model, "scan")
    assert any(n.op_type == "Scan" for n in lowered.graph.node)
    x = np.random.default_rng(0).normal(0.3, 1.0, size=(T * 5, *shape))
    y, v = run_ort(lowered, {"X": x})
    y_loop, v_loop = if_neuron.if_forward(x, np.float64(0.7), np.full(shape, 0.3), T)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, y_loop)
    np.testing.assert_array_equal(v, v_loop)


def test_constant_current_gives_rounded_quantisation():
    """v(0) = theta/2 and constant z: rate = theta/T * clip(floor(T z / theta + 1/2), 0, T)."""
    T, theta = 8, np.float32(1.0)
    z = np.linspace(-0.5, 1.5, 41, dtype=np.float32).reshape(-1, 1)
    spikes, _ = if_neuron.if_forward(np.tile(z, (T, 1)), theta, theta / 2, T)
    rate = spikes.reshape(T, -1).mean(axis=0)
    expected = theta / T * np.clip(np.floor(T * z[:, 0] / theta + 0.5), 0, T)
    np.testing.assert_allclose(rate, expected, atol=1e-6)


def test_charge_is_conserved():
    """Reset by subtraction: v(T) = v(0) + sum_t x_t - sum_t s_t, exactly up to float rounding."""
    rng = np.random.default_rng(3)
    T, x = 32, rng.normal(0.2, 0.5, size=(32 * 7, 6)).astype(np.float32)
    spikes, v = if_neuron.if_forward(x, np.float32(0.8), np.float32(0.4), T)
    total_in = x.reshape(T, 7, 6).sum(0) + 0.4
    np.testing.assert_allclose(v, total_in - spikes.reshape(T, 7, 6).sum(0), atol=1e-4)


def test_rejects_rows_not_multiple_of_T():
    with pytest.raises(ValueError, match="multiple of T"):
        if_neuron.if_forward(np.zeros((5, 2), np.float32), np.float32(1), np.float32(0), 2)


def test_install_is_idempotent_and_time_steps_reads_T():
    model = one_node_model(4, np.float32(1), np.float32(0.5), (2, 3), 17)
    if_neuron.install(model, 4)
    assert len(model.functions) == 1
    assert sum(o.domain == if_neuron.DOMAIN for o in model.opset_import) == 1
    assert if_neuron.time_steps(model) == 4


@pytest.mark.parametrize("form", (None,) + tuple(FORMS))
def test_reset_to_zero_matches_its_loop_in_every_form(form):
    """reset="zero" (the nir-reset-zero target): the function body, each lowered form and the
    numpy reference give the textbook reset-to-zero loop's spikes and potential; a tie u = theta
    does not fire (NIR's v > theta), unlike reset by subtraction."""
    T, shape = 6, (3, 4)
    theta = np.array([0.5, 1.0, 2.0], np.float32).reshape(3, 1)
    v0 = np.zeros(shape, np.float32)
    model = one_node_model(T, theta, v0, (2, *shape), 17, reset="zero")
    model = unroll(model, form) if form else model
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(3).normal(0.4, 1.0, size=(T * 2, *shape)).astype(np.float32)
    x[:2] = np.broadcast_to(theta, (2, *shape))  # u = theta exactly at the first step
    y_loop, v_loop = step_loop(x, theta, v0, T, "zero")
    assert not y_loop[:2].any() and y_loop.any()
    np.testing.assert_array_equal(if_neuron.if_forward(x, theta, v0, T, "zero")[0], y_loop)
    for y, v in (run_ort(model, {"X": x}), ReferenceEvaluator(model).run(None, {"X": x})):
        np.testing.assert_array_equal(y, y_loop)
        np.testing.assert_array_equal(v, v_loop)
