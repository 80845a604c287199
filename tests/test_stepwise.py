"""Time-batched execution equals execution in chunks of steps (explicit state carried from one
chunk to the next; one step per call is the textbook runner), spike for spike and bit for bit, on
graphs with residual Add, Concat and MaxPool and on a shipped model."""

import numpy as np
import pytest

from conftest import MODELS
from graphs import inputs
from test_rewrite import residual_concat_pool_model
import onnx2snn
from onnx2snn import Config
from onnx2snn.simulation.runtime import expose, run
from onnx2snn.data import from_arrays
from onnx2snn.simulation.stepwise import ChunkedSNN, StepwiseSNN


def compare(result, feeds, T, steps=1):
    layers = [layer.output for layer in result.plan.layers]
    if steps == 1:
        means, chunks = StepwiseSNN(result.ann, result.plan, result.params, result.config,
                                    watch=tuple(layers)).run(feeds, T)
    else:
        means, chunks, _ = ChunkedSNN(result.ann, result.plan, result.params, T, steps, result.config,
                                      watch=tuple(layers)).run(feeds)
    batched = run(expose(result.snn, layers), from_arrays(feeds, result.ann), result.config)
    for name in layers:
        per_step = np.concatenate(chunks[name])  # [T*B, ...], time-major like the batched model
        np.testing.assert_array_equal(per_step, batched[name], err_msg=name)
    for out, value in means.items():
        np.testing.assert_array_equal(value, batched[out], err_msg=out)


@pytest.mark.parametrize("T, steps", [(1, 1), (5, 1), (16, 1), (16, 4), (6, 3)])
def test_residual_concat_maxpool_graph(T, steps):
    x = inputs((2, 6, 6), n=12)
    result = onnx2snn.convert(residual_concat_pool_model(), {"x": x}, Config(T=T))
    compare(result, {"x": x}, T, steps)


def test_shipped_resnet_with_phase2_bias():
    path = MODELS / "digits_resnet.onnx"
    result = onnx2snn.convert(path, path.with_suffix(".calib.npz"), Config(T=8))
    assert any(p.bias is not None for p in result.params.values())
    x = np.load(path.with_suffix(".test.npz"))["x"][:32].astype(np.float32)
    compare(result, {"input": x}, 8)
