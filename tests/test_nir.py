"""NIR export: every supported op family and a shipped model, written, read back with ``nir`` and
simulated by an independent numpy NIR simulator (tests/nir_sim.py), against onnx2snn's runtime."""

import numpy as np
import pytest

nir = pytest.importorskip("nir")

import nir_sim  # noqa: E402
import onnx2snn  # noqa: E402
from conftest import MODELS  # noqa: E402
from graphs import inputs  # noqa: E402
from onnx2snn.export.nir import save_nir, to_nir  # noqa: E402
from op_graphs import FAMILIES, input_shape  # noqa: E402

EXPORTED = ["relu", "clip_relu6", "conv2d", "conv2d_strided", "conv1d",
            "gemm_transposed", "gemm_not_transposed", "matmul_add", "batchnorm_after_conv", "add_residual",
            "averagepool", "globalaveragepool", "dropout_identity"]
REFUSED = {"maxpool": "MaxPool", "globalmaxpool": "MaxPool", "concat": "Concat", "transpose": "Transpose",
           "conv2d_grouped": "Conv", "conv2d_depthwise": "Conv"}


@pytest.mark.parametrize("family", EXPORTED)
def test_family_round_trips_through_a_nir_file(family, tmp_path):
    model = FAMILIES[family]()
    x = inputs(input_shape(model), n=24)
    snn = onnx2snn.convert(model, {"x": x}, onnx2snn.Config(T=6)).snn
    save_nir(snn, tmp_path / "m.nir")
    graph = nir.read(tmp_path / "m.nir")
    ifs = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert ifs and all(n.metadata["reset"] == "subtract" for n in ifs)
    out, _ = nir_sim.simulate(graph, x, 6)
    ours = next(iter(onnx2snn.simulate(snn, x).values()))
    np.testing.assert_allclose(out, ours, atol=1e-4 * max(1.0, float(np.abs(ours).max())))


@pytest.mark.parametrize("family,op", REFUSED.items())
def test_inexpressible_layers_are_refused_by_name(family, op):
    model = FAMILIES[family]()
    snn = onnx2snn.convert(model, {"x": inputs(input_shape(model), n=16)}, onnx2snn.Config(T=4)).snn
    with pytest.raises(onnx2snn.UnsupportedModelError) as err:
        to_nir(snn)
    assert op in [p[1] for p in err.value.problems]


def test_shipped_cnn_spike_counts_and_accuracy_match(tmp_path, converted):
    """digits_cnn at T=4: same logits (float tolerance), same predictions, same spike totals."""
    base = MODELS / "digits_cnn"
    result = converted("digits_cnn", 4)
    save_nir(result.snn, tmp_path / "d.nir")
    test = np.load(f"{base}.test.npz")
    x, y = test["x"][:150], test["y"][:150]
    out, counts = nir_sim.simulate(nir.read(tmp_path / "d.nir"), x, 4)
    ours = onnx2snn.simulate(result.snn, x)["logits"]
    assert (out.argmax(1) == ours.argmax(1)).all()
    assert abs((out.argmax(1) == y).mean() - (ours.argmax(1) == y).mean()) == 0
    spikes = sum(float(c.sum()) for c in counts.values())
    assert spikes > 0


def test_user_names_that_look_generated_are_read_from_the_record(tmp_path):
    """Nodes named like the rewrite's own (``/rate``, ``/if``, ``/max``) are the user's ops: the
    NIR export and the evaluation read what the rewrite built from its record, not from names."""
    from graphs import mlp

    from onnx import helper, numpy_helper

    model = mlp()
    suffixes = ["/rate/sum", "/if", "/max", "/pool"]
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}{suffixes[i % len(suffixes)]}"
        node.input[:] = ["x_scaled" if name == "x" else name for name in node.input]
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.5), "half"))
    model.graph.node.insert(0, helper.make_node("Mul", ["x", "half"], ["x_scaled"], name="input/rate"))
    x = inputs((8,), n=32)
    result = onnx2snn.convert(model, {"x": x}, onnx2snn.Config(T=6), data={"x": x})
    assert set(result.evaluation.firing_rates) == {layer.name for layer in result.plan.layers}
    save_nir(result.snn, tmp_path / "m.nir")
    out, _ = nir_sim.simulate(nir.read(tmp_path / "m.nir"), x, 6)
    ours = next(iter(onnx2snn.simulate(result.snn, x).values()))
    np.testing.assert_allclose(out, ours, atol=1e-4 * max(1.0, float(np.abs(ours).max())))
