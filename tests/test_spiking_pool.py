"""Spiking max-pool: its mean over T is exactly the max over each window of the input's mean, at
any T; a plain MaxPool on spikes (an OR) over-counts."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

from graphs import run_ort
from onnx2snn.snn.spiking_pool import spiking_max_pool


def pool_model(op, T, attrs):
    node = helper.make_node(op, ["x"], ["y"], name="pool", **attrs)
    graph = helper.make_graph([node], "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["TB", 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", 2, "h", "w"])])
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    g = gs.import_onnx(plain)
    spiking_max_pool(g, g.nodes[0], T)
    g.cleanup().toposort()
    return plain, gs.export_onnx(g)


@pytest.mark.parametrize("T", [1, 3, 8, 32])
@pytest.mark.parametrize("op,attrs", [("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
                                      ("MaxPool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
                                      ("GlobalMaxPool", {})])
def test_rate_of_spiking_pool_is_max_of_rates(T, op, attrs):
    rng = np.random.default_rng(T)
    theta, B = np.float32(0.75), 3
    spikes = ((rng.random((T * B, 2, 4, 4)) < rng.random((1, 2, 4, 4))) * theta).astype(np.float32)
    plain, spiking = pool_model(op, T, attrs)
    onnx.checker.check_model(spiking, full_check=True)
    out = run_ort(spiking, {"x": spikes})[0]
    rate_in = spikes.reshape(T, B, 2, 4, 4).mean(0)
    expected = run_ort(plain, {"x": rate_in})[0]
    np.testing.assert_allclose(out.reshape(T, B, *out.shape[1:]).mean(0), expected, atol=1e-6)
    assert set(np.round(np.unique(out) / theta, 5)) <= {0.0, 1.0}, "the output is again a spike train"
    naive = run_ort(plain, {"x": spikes})[0].reshape(T, B, *out.shape[1:]).mean(0)
    assert (naive >= expected - 1e-6).all()


def test_currents_keep_their_total():
    """On real-valued currents the pool passes the window max of the accumulated input."""
    T, rng = 5, np.random.default_rng(0)
    x = rng.normal(size=(T * 2, 2, 4, 4)).astype(np.float32)
    plain, spiking = pool_model("MaxPool", T, {"kernel_shape": [2, 2], "strides": [2, 2]})
    out = run_ort(spiking, {"x": x})[0].reshape(T, 2, 2, 2, 2)
    expected = run_ort(plain, {"x": x.reshape(T, 2, 2, 4, 4).sum(0)})[0]
    np.testing.assert_allclose(out.sum(0), expected, atol=1e-5)
