"""Phase 2's IF kernel gives the spikes of the IFNeuron reference (same float ops, same order)."""

import numpy as np
import pytest

from onnx2snn import Config
from onnx2snn.calibration.if_kernel import IFKernel
from onnx2snn.ops.if_neuron import if_forward


TARGET = {"subtract": "onnx", "zero": "nir-reset-zero"}


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("T", [1, 2, 5])
def test_kernel_matches_reference(constant, with_bias, T, reset):
    B = 7
    rng = np.random.default_rng(0)
    current = rng.normal(0.3, 0.6, size=(1 if constant else T, B, 3, 4, 4)).astype(np.float32)
    theta = rng.uniform(0.5, 1.5, size=(3, 1, 1)).astype(np.float32)
    v0 = (0.5 * theta).astype(np.float32)
    bias = rng.normal(0, 0.1, size=(3, 1, 1)).astype(np.float32) if with_bias else None
    x = np.broadcast_to(current, (T,) + current.shape[1:])
    if with_bias:
        x = x + bias
    spikes, _ = if_forward(np.ascontiguousarray(x).reshape(T * B, 3, 4, 4), theta, v0, T, reset)
    config = Config(T=T, target=TARGET[reset])
    counts, fired = IFKernel(T, config).run(current, theta, v0, bias, keep=True)
    np.testing.assert_array_equal(fired, spikes > 0)
    np.testing.assert_array_equal(counts, (spikes > 0).reshape(T, B, 3, 4, 4).sum(axis=0))
    only_counts, none = IFKernel(T, config).run(current, theta, v0, bias)
    assert none is None
    np.testing.assert_array_equal(only_counts, counts)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("T", [1, 2, 5, 16])
def test_search_error_matches_counted_spikes(constant, with_bias, T, reset):
    """The search kernel's per-neuron error, with the count read from the final potential, equals
    the error of the counted spikes (up to float32 sums), also for a second candidate run side by side."""
    B, n = 33, 40
    rng = np.random.default_rng(1)
    current = rng.normal(0.3, 2.0, size=(1 if constant else T, B, n)).astype(np.float32)
    theta = rng.uniform(0.5, 1.5, size=n).astype(np.float32)
    v0 = (rng.uniform(0, 1, size=n) * theta).astype(np.float32)
    bias = rng.normal(0, 0.1, size=n).astype(np.float32) if with_bias else None
    target = np.maximum(rng.normal(0.3, 0.5, size=(B, n)), 0).astype(np.float32)
    with IFKernel(T, Config(T=T, threads=2, target=TARGET[reset])) as kernel:
        counts, _ = kernel.run(current, theta, v0, bias)
        counts2, _ = kernel.run(current, 2 * theta, v0, bias)
        total = current.sum(axis=0) if current.shape[0] == T else T * current[0]
        error, twice = kernel.sse(current, total, target, [(theta, v0, bias), (2 * theta, v0, bias)])
    expected = ((counts * (theta / T) - target).astype(np.float64) ** 2).sum(axis=0)
    assert error.shape == (n,)
    np.testing.assert_allclose(error, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(twice, ((counts2 * (2 * theta / T) - target).astype(np.float64) ** 2).sum(axis=0),
                               rtol=1e-5, atol=1e-6)

