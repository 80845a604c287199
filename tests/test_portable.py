"""Portable NIR (onnx2snn.export.portable) and the nir-portable target: the rewritten graph holds
only what sinabs, snnTorch and Norse import, has unit thresholds, and simulates (tests/nir_sim.py,
independent of onnx2snn) exactly as onnx2snn's own SNN."""

import numpy as np
import pytest

nir = pytest.importorskip("nir")

import nir_sim  # noqa: E402
import onnx2snn  # noqa: E402
from conftest import MODELS  # noqa: E402
from graphs import inputs  # noqa: E402
from onnx2snn.export.nir import save_nir, to_nir  # noqa: E402
from onnx2snn.export.portable import PORTABLE_KINDS, make_portable  # noqa: E402
from op_graphs import FAMILIES, input_shape  # noqa: E402

PORTABLE = ["relu", "clip_relu6", "conv2d", "conv2d_strided", "gemm_transposed", "gemm_not_transposed",
            "matmul_add", "batchnorm_after_conv", "add_residual", "averagepool", "globalaveragepool"]


def _kinds(graph) -> set[str]:
    return {type(n).__name__ for n in graph.nodes.values()}


@pytest.mark.parametrize("target", ["nir-portable", "nir-reset-zero"])
@pytest.mark.parametrize("family", PORTABLE)
def test_family_portable_file_simulates_as_onnx2snn(family, target, tmp_path):
    model = FAMILIES[family]()
    x = inputs(input_shape(model), n=24)
    snn = onnx2snn.convert(model, {"x": x}, onnx2snn.Config(T=6, target=target)).snn
    save_nir(snn, tmp_path / "m.nir", portable=True)
    graph = nir.read(tmp_path / "m.nir")
    assert _kinds(graph) <= set(PORTABLE_KINDS)
    assert all(np.all(n.v_threshold == 1) for n in graph.nodes.values() if isinstance(n, nir.IF))
    out, _ = nir_sim.simulate(graph, x, 6)
    ours = next(iter(onnx2snn.simulate(snn, x).values()))
    np.testing.assert_allclose(out, ours, atol=1e-4 * max(1.0, float(np.abs(ours).max())))


def test_shipped_cnn_portable_form_spikes_as_the_exact_form(converted):
    """digits_cnn (two average pools, per-channel thresholds, input scaling, v(0) in the metadata):
    the portable graph's spike count per layer equals the exact form's, and the outputs agree to
    float rounding."""
    snn = converted("digits_cnn", 4).snn
    x = np.load(MODELS / "digits_cnn.test.npz")["x"][:200]
    exact, portable = to_nir(snn), to_nir(snn, portable=True)
    assert "Scale" in _kinds(exact) and "AvgPool2d" in _kinds(exact)
    assert _kinds(portable) == {"Input", "Output", "Conv2d", "Affine", "IF", "Flatten"}
    (a, ca), (b, cb) = nir_sim.simulate(exact, x, 4), nir_sim.simulate(portable, x, 4)
    assert [int(c.sum()) for c in ca.values()] == [int(c.sum()) for c in cb.values()]
    np.testing.assert_allclose(a, b, atol=1e-4 * float(np.abs(a).max()))


def _toy_graph(theta_in_channel: np.ndarray):
    """Input -> Scale -> Conv -> IF -> (AvgPool -> Conv) + (Scale skip) -> IF -> Flatten -> Affine."""
    rng = np.random.default_rng(0)
    c = 3

    def conv(k, pad):
        return nir.Conv2d(input_shape=(4, 4), weight=rng.normal(size=(c, c, k, k)).astype(np.float32), stride=1,
                          padding=pad, dilation=1, groups=1, bias=rng.normal(size=c).astype(np.float32))
    theta = np.broadcast_to(theta_in_channel, (c, 4, 4)).astype(np.float32)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([c, 4, 4])}),
        "scale": nir.Scale(scale=np.full((c, 4, 4), 0.5, np.float32)),
        "conv1": conv(3, 1),
        "if1": nir.IF(r=np.ones((c, 4, 4), np.float32), v_threshold=theta, v_reset=np.zeros((c, 4, 4), np.float32)),
        "spikes1": nir.Scale(scale=theta),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv2": nir.Conv2d(input_shape=(2, 2), weight=rng.normal(size=(c, c, 3, 3)).astype(np.float32), stride=1,
                            padding=1, dilation=1, groups=1, bias=np.zeros(c, np.float32)),
        "skip": nir.Scale(scale=np.full((c, 4, 4), 0.25, np.float32)),
        "skip_pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "if2": nir.IF(r=np.ones((c, 2, 2), np.float32), v_threshold=np.full((c, 2, 2), 0.7, np.float32),
                      v_reset=np.zeros((c, 2, 2), np.float32)),
        "flat": nir.Flatten(input_type={"input": np.array([c, 2, 2])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(size=(5, 4 * c)).astype(np.float32), bias=np.zeros(5, np.float32)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [("input", "scale"), ("scale", "conv1"), ("conv1", "if1"), ("if1", "spikes1"), ("spikes1", "pool"),
             ("pool", "conv2"), ("conv2", "if2"), ("spikes1", "skip"), ("skip", "skip_pool"),
             ("skip_pool", "if2"), ("if2", "flat"), ("flat", "fc"), ("fc", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_scales_pools_and_skips_are_folded_or_materialised_exactly():
    graph = _toy_graph(np.array([0.6, 1.3, 2.0]).reshape(3, 1, 1))
    portable = make_portable(graph)
    assert _kinds(portable) <= set(PORTABLE_KINDS)
    x = np.random.default_rng(1).uniform(0, 2, size=(64, 3, 4, 4)).astype(np.float32)
    (a, ca), (b, cb) = nir_sim.simulate(graph, x, 8), nir_sim.simulate(portable, x, 8)
    assert sum(int(c.sum()) for c in ca.values()) > 0
    assert [int(c.sum()) for c in ca.values()] == [int(c.sum()) for c in cb.values()]
    np.testing.assert_allclose(a, b, atol=1e-5 * float(np.abs(a).max()))


def test_threshold_varying_within_a_channel_is_refused_by_name():
    theta = np.linspace(0.5, 1.5, 16, dtype=np.float32).reshape(1, 4, 4)
    with pytest.raises(onnx2snn.UnsupportedModelError) as err:
        make_portable(_toy_graph(theta))
    assert err.value.problems[0][0] == "if1"


def test_lif_form_is_leak_free_in_float32():
    portable = make_portable(_toy_graph(np.ones((3, 1, 1))), neuron="LIF")
    lifs = [n for n in portable.nodes.values() if isinstance(n, nir.LIF)]
    assert len(lifs) == 2 and not any(isinstance(n, nir.IF) for n in portable.nodes.values())
    for n in lifs:  # snnTorch: beta = 1 - 1e-4 / tau, input gain r * 1e-4 / tau
        assert np.float32(1 - 1e-4 / n.tau.astype(np.float64)).min() == np.float32(1.0)
        np.testing.assert_allclose(n.r * 1e-4 / n.tau, 1.0, rtol=1e-6)
        assert np.all(n.v_leak == 0) and np.all(n.v_threshold == 1)
