"""Time-batched execution equals step-by-step execution (one session call per step, explicit
state), spike for spike, on graphs with residual Add, Concat and MaxPool and on a shipped model."""

import numpy as np
import pytest

from conftest import MODELS
from graphs import inputs
from test_rewrite import residual_concat_pool_model
import onnx2snn
from onnx2snn import Config
from onnx2snn.runtime import expose, run
from onnx2snn.data import from_arrays
from onnx2snn.stepwise import StepwiseSNN


def compare(result, feeds, T):
    layers = [layer.output for layer in result.plan.layers]
    stepwise = StepwiseSNN(result.ann, result.plan, result.params, result.config, watch=tuple(layers))
    means, steps = stepwise.run(feeds, T)
    batched = run(expose(result.snn, layers), from_arrays(feeds, result.ann), result.config)
    for name in layers:
        per_step = np.concatenate(steps[name])  # [T*B, ...], time-major like the batched model
        mismatch = np.mean(per_step != batched[name])
        assert mismatch <= 1e-3, (name, mismatch)  # float rounding may flip a rare spike
    for out, value in means.items():
        np.testing.assert_allclose(value, batched[out], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("T", [1, 5, 16])
def test_residual_concat_maxpool_graph(T):
    x = inputs((2, 6, 6), n=12)
    result = onnx2snn.convert(residual_concat_pool_model(), {"x": x}, Config(T=T))
    compare(result, {"x": x}, T)


def test_shipped_resnet_with_phase2_bias():
    path = MODELS / "digits_resnet.onnx"
    result = onnx2snn.convert(path, path.with_suffix(".calib.npz"), Config(T=8))
    assert any(p.bias is not None for p in result.params.values())
    x = np.load(path.with_suffix(".test.npz"))["x"][:32].astype(np.float32)
    compare(result, {"input": x}, 8)
