"""Optional weight refit: im2col matches onnxruntime's Conv, the normal equations recover a known
affine map, and --refit-weights changes (and reports) only the layers it can refit."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphs import cnn, inputs, mlp, run_ort
import onnx2snn
from onnx2snn import Config
from onnx2snn.calibration.refit import NormalEquations, conv_patches as _im2col


def conv_node(w, b, **attrs):
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **attrs)
    dims = w.ndim - 2
    graph = helper.make_graph([node], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, gs.import_onnx(model).nodes[0], dims


@pytest.mark.parametrize("shape,attrs", [
    ((4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((4, 3, 3, 3), {"strides": [2, 2], "pads": [0, 1, 0, 1]}),
    ((4, 3, 2, 2), {"dilations": [2, 2]}),
    ((6, 1, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}),
    ((4, 3, 5), {"pads": [2, 2]}),
])
def test_normal_equations_match_onnxruntime_conv_and_recover_weights(shape, attrs):
    rng = np.random.default_rng(0)
    w = rng.normal(size=shape).astype(np.float32)
    b = rng.normal(size=shape[0]).astype(np.float32)
    model, node, dims = conv_node(w, b, **attrs)
    cin = shape[1] * attrs.get("group", 1)
    x = rng.normal(size=(8, cin) + (9,) * dims).astype(np.float32)
    y = run_ort(model, {"x": x})[0]
    if attrs.get("group", 1) == 1:
        cols = _im2col(x, node)
        mine = cols @ w.reshape(shape[0], -1).T + b
        np.testing.assert_allclose(mine, np.moveaxis(y, 1, -1).reshape(-1, shape[0]), atol=1e-4)
    eq = NormalEquations(node)
    eq.add(x, y)
    w2, b2 = eq.solve()
    np.testing.assert_allclose(w2, w, atol=2e-2)
    np.testing.assert_allclose(b2, b, atol=2e-2)


@pytest.mark.parametrize("shape,attrs", [
    ((4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((4, 3, 3, 2), {"strides": [2, 1], "pads": [0, 1, 1, 0]}),
    ((4, 3, 2, 2), {"dilations": [2, 3]}),
    ((4, 3, 5), {"pads": [2, 1], "strides": [2]}),
])
def test_patches_at_positions_are_the_rows_of_the_full_im2col(shape, attrs):
    """The gather at chosen output positions (the weight fit's) equals those rows of the
    sliding-window im2col, and both reproduce onnxruntime's Conv."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=shape).astype(np.float32)
    model, node, dims = conv_node(w, np.zeros(shape[0], np.float32), **attrs)
    x = rng.normal(size=(5, shape[1]) + (9,) * dims).astype(np.float32)
    y = run_ort(model, {"x": x})[0]
    out = int(np.prod(y.shape[2:]))
    positions = np.random.default_rng(2).choice(out, size=min(out, 7), replace=False)
    full = _im2col(x, node).reshape(5, out, -1)
    picked = _im2col(x, node, positions)
    np.testing.assert_array_equal(picked, full[:, positions])
    np.testing.assert_allclose(picked @ w.reshape(shape[0], -1).T, y.reshape(5, shape[0], -1)[:, :, positions]
                               .transpose(0, 2, 1), rtol=1e-5, atol=1e-5)


def test_gemm_with_transposed_weights_is_recovered():
    model = mlp(widths=(6, 5, 3))
    node = gs.import_onnx(model).nodes[0]
    x = inputs((6,), n=200)
    w, b = node.inputs[1].values, node.inputs[2].values
    eq = NormalEquations(node)
    eq.add(x, x @ w.T + b)
    w2, b2 = eq.solve()
    np.testing.assert_allclose(w2, w, atol=1e-2)
    np.testing.assert_allclose(b2, b, atol=1e-2)


def test_refit_weights_end_to_end_is_reported():
    model, x = cnn(), inputs((2, 6, 6), n=120)
    result = onnx2snn.convert(model, {"x": x}, Config(T=4, refit_weights=True))
    assert [f.refit for f in result.fits] == [False, True], "the first layer sees the analog input"
    assert result.refitted is not None
    meta = {p.key: p.value for p in result.snn.metadata_props}
    assert "refitted" in meta["onnx2snn.weights"]
    before = {i.name: numpy_helper.to_array(i) for i in result.ann.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in result.refitted.graph.initializer}
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert changed and all(k.startswith(("w", "b")) for k in changed)
    onnx.checker.check_model(result.snn, full_check=True)
    assert run_ort(result.snn, {"x": x[:3]})[0].shape == (3, 3)
    plain = onnx2snn.convert(model, {"x": x}, Config(T=4))
    assert plain.refitted is None and not any(f.refit for f in plain.fits)
