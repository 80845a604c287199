"""--fit-weights (calibration/fit.py): the straight-through gradient, one conv layer fitted through
its IF neurons against the least-squares refit, and determinism of whole conversions."""

import numpy as np
import onnx_graphsurgeon as gs
import pytest

import onnx2snn
from conftest import MODELS
from onnx2snn import Config
from onnx2snn.calibration import fit, surrogate
from onnx2snn.calibration.refit import NormalEquations
from onnx2snn.calibration.targets import LayerTargets
from onnx2snn.simulation.budget import Budget
from onnx2snn.snn.params import LayerParams

T, CIN, COUT, SIZE = 4, 3, 4, 6


def conv_node(rng) -> gs.Node:
    w = (rng.normal(size=(COUT, CIN, 3, 3)) / 3).astype(np.float32)
    b = rng.normal(0.1, 0.1, size=COUT).astype(np.float32)
    x, y = gs.Variable("x", np.float32), gs.Variable("y", np.float32)
    return gs.Node("Conv", "conv", attrs={"pads": [1, 1, 1, 1]}, inputs=[x, gs.Constant("w", w), gs.Constant("b", b)],
                   outputs=[y])


def conv(x: np.ndarray, node: gs.Node) -> np.ndarray:
    """Reference Conv (pads 1, stride 1) of x [N, CIN, SIZE, SIZE] -> [N, COUT, SIZE, SIZE]."""
    w, b = node.inputs[1].values, node.inputs[2].values
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    out = np.zeros((len(x), COUT, SIZE, SIZE), np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + SIZE, j:j + SIZE], w[:, :, i, j])
    return out + b[None, :, None, None]


def layer_case(samples=96, seed=0):
    """Input spike trains (0/1 per step) whose rates are the ANN's input quantized to T levels
    plus a random phase; the ANN sees the exact rates. Returns (node, cols, targets, params, ann
    pre-activation, SNN mean input)."""
    rng = np.random.default_rng(seed)
    node = conv_node(rng)
    rate = rng.uniform(0, 1, size=(samples, CIN, SIZE, SIZE)).astype(np.float32)
    v = rng.uniform(0, 1, size=rate.shape).astype(np.float32)
    spikes = []
    for _ in range(T):  # an IF encoder of the rate: spikes whose mean over T approximates it
        v += rate
        s = (v >= 1).astype(np.float32)
        v -= s
        spikes.append(s)
    spikes = np.stack(spikes)  # [T, N, C, H, W]
    positions = np.arange(SIZE * SIZE)
    cols = np.stack([fit._at_positions(spikes[t], node, positions) for t in range(T)], axis=1)  # [N, T, P, K]
    z = conv(rate, node)
    theta = np.float32(np.percentile(z[z > 0], 98))
    a = np.clip(z, 0, theta).reshape(samples, -1).astype(np.float32)
    index = np.arange(COUT * SIZE * SIZE)
    target = LayerTargets("relu", (COUT, SIZE, SIZE), a.mean(0).reshape(COUT, SIZE, SIZE), index,
                          index // (SIZE * SIZE), a)
    params = LayerParams(np.float32(theta), np.float32(theta / 2), "test")
    return node, cols, target, params, z, spikes.mean(0)


def test_conv_patches_reproduce_the_convolution():
    """The fit's currents (patches x weights) against a reference convolution of the mean input."""
    node, cols, target, params, _, mean_in = layer_case(samples=8)
    layer = surrogate.SpikingLayer(cols, target, params, T, node)
    currents = layer.currents(layer.start(), slice(0, 8))  # [N, T, P*C], position-major
    expected = conv(mean_in, node).reshape(8, COUT, -1).transpose(0, 2, 1).reshape(8, -1)
    np.testing.assert_allclose(currents.mean(1), expected, rtol=1e-5, atol=1e-5)


def test_gradient_matches_finite_differences_of_the_envelope_loss(monkeypatch):
    """With the count replaced by its envelope (the surrogate the backward pass uses), the
    analytic gradient equals central differences of the loss."""
    node, cols, target, params, _, _ = layer_case(samples=6)
    layer = surrogate.SpikingLayer(cols[:6].astype(np.float64), target, params, T, node)

    def envelope(wb, rows):
        c = layer.currents(wb, rows)
        total = c.sum(axis=1) + layer.v0 + T * layer.bias
        return layer.theta / T * np.clip(total / layer.theta, 0, T), total

    monkeypatch.setattr(layer, "rates", envelope)
    wb = layer.start()
    rows = slice(0, 6)
    _, grad = layer.gradient(wb, rows)
    rng = np.random.default_rng(3)
    for k, c in zip(rng.integers(0, wb.shape[0], 12), rng.integers(0, wb.shape[1], 12)):
        step = np.zeros_like(wb)
        step[k, c] = 1e-4
        numeric = (layer.loss(wb + step, rows) - layer.loss(wb - step, rows)) / 2e-4
        assert grad[k, c] == pytest.approx(numeric, rel=1e-3, abs=1e-5)


def test_fitted_layer_beats_phase2_alone_and_the_least_squares_refit_on_held_back_samples():
    """Held-back samples (the last quarter): the fit's rate error through the IF neurons is lower
    than the current weights' and no higher than the least-squares refit's (the --refit-weights
    method: the mean current fitted to the ANN's), which is one of the fit's candidates."""
    node, cols, target, params, z, mean_in = layer_case()
    layer = surrogate.SpikingLayer(cols, target, params, T, node)
    split, rows = 72, 96
    held = slice(split, rows)
    equations = NormalEquations(node)
    for i in range(split):
        equations.add(mean_in[i:i + 1], z[i:i + 1])
    w_ls, b_ls = equations.solve()
    refit = layer.loss(np.concatenate([w_ls.reshape(COUT, -1).T, b_ls[None]], 0), held)
    best, before, after = surrogate.fit_layer(layer, z.reshape(len(z), -1)[:split], split, rows)
    assert after == layer.loss(best, held)
    assert after < 0.95 * before and after <= refit * (1 + 1e-6), (before, refit, after)


def test_adam_steps_take_the_fit_rows_in_mini_batches_and_never_the_held_back_ones(monkeypatch):
    """Each Adam step's gradient reads one of ``BATCHES`` consecutive slices of the fit rows, in
    turn, covering them all; the held-back rows are only ever scored."""
    node, cols, target, params, _, _ = layer_case()
    layer = surrogate.SpikingLayer(cols, target, params, T, node)
    split, rows = 70, 96
    seen = []
    gradient = layer.gradient
    monkeypatch.setattr(layer, "gradient", lambda wb, r: (seen.append((r.start, r.stop)), gradient(wb, r))[1])
    surrogate._adam(layer, layer.start(), split, rows)
    assert len(seen) == surrogate.ITERATIONS
    batches = sorted(set(seen))
    assert len(batches) == surrogate.BATCHES and batches[0][0] == 0 and batches[-1][1] == split
    assert all(a[1] == b[0] for a, b in zip(batches, batches[1:]))  # consecutive, no overlap, no gap
    assert seen[:surrogate.BATCHES] == batches  # in turn


def test_held_back_record_judges_the_layer_calibrated_again():
    """The held-back samples kept after the fit (``_Layer.rows``) with the fit's parameters give its
    held-back loss; other parameters (the layer calibrated again) change it, and the record does not
    share its arrays with the freed fit samples."""
    node, cols, target, params, z, _ = layer_case()
    layer = surrogate.SpikingLayer(cols, target, params, T, node)
    split, rows = 72, 96
    best, _, after = surrogate.fit_layer(layer, z.reshape(len(z), -1)[:split], split, rows)
    held = layer.rows(slice(split, rows))
    assert not np.shares_memory(held.cols, layer.cols) and len(held.a) == rows - split
    assert held.loss(best, slice(None)) == after
    other = LayerParams(np.float32(params.threshold * 1.3), np.float32(params.v0 * 1.3), "test")
    assert held.with_params(other).loss(best, slice(None)) != after
    assert held.loss(best, slice(None)) == after  # with_params leaves the record as it was


def test_fit_set_size_does_not_depend_on_the_budget():
    """The fit's samples are fixed by FIT_BYTES: two budgets that both hold them give the same
    count; a budget whose free room cannot hold them cuts it (the only case the fit depends on it)."""
    node = conv_node(np.random.default_rng(0))
    args = (4096, COUT * 64, (COUT, 16, 16), Config(T=8))
    per_sample = 9 * 64 * CIN * 9 * 4 + 16 * COUT * 64 * 8
    assert fit._rows(*args, Budget(64 << 30), 0, node) == fit._rows(*args, Budget(16 << 30), 0, node) \
        == min(4096, fit.FIT_BYTES // per_sample)
    small = Budget(1 << 30)
    assert fit._rows(*args, small, 0, node) == max(0, small.free()) // 2 // per_sample < fit.FIT_BYTES // per_sample


def test_fit_weights_conversion_is_deterministic_and_reported():
    base = MODELS / "digits_cnn"
    config = Config(T=2, fit_weights=True)
    a, b = (onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", config) for _ in range(2))
    assert a.snn.SerializeToString() == b.snn.SerializeToString()
    changed = [f for f in a.fits if f.weights_change is not None]
    meta = {p.key: p.value for p in a.snn.metadata_props}
    if changed:
        assert "--fit-weights" in meta["onnx2snn.weights"] and changed[0].name in meta["onnx2snn.weights"]
    else:
        assert meta["onnx2snn.weights"] == "unchanged"


def test_fit_and_refit_are_exclusive():
    with pytest.raises(onnx2snn.ConfigError, match="choose one"):
        Config(fit_weights=True, refit_weights=True)
