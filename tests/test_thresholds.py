"""Phase 1: thresholds per method and granularity, trained clips, dead layers."""

import numpy as np
import pytest

from graphs import GraphBuilder, cnn, inputs
from onnx2snn import Config
from onnx2snn.graph import load
from onnx2snn.data import from_arrays
from onnx2snn.graph.plan import make_plan
from onnx2snn.simulation.runtime import expose, run
from onnx2snn.calibration.stats import collect
from onnx2snn.calibration.thresholds import phase1


def phase1_for(model, x, **config):
    ann = load.normalize(model)
    plan = make_plan(ann)
    cfg = Config(**config)
    data = from_arrays({"x": x}, ann)
    acts = run(expose(ann, [layer.output for layer in plan.layers]), data, cfg)
    return plan, phase1(plan, collect(ann, plan, data, cfg), cfg), acts


@pytest.mark.parametrize("method,q,alpha", [("max", 100, 0.0), ("percentile", 99.9, 0.0),
                                            ("percentile-half", 99.9, 0.5), ("dual-phase", 98, 0.5)])
def test_method_defaults(method, q, alpha):
    x = inputs((2, 6, 6), n=200)
    plan, params, acts = phase1_for(cnn(), x, method=method, granularity="tensor")
    for layer in plan.layers:
        a = acts[layer.output]
        p = params[layer.name]
        pos = np.sort(a[a > 0])
        lo, hi = pos[int((len(pos) - 1) * q / 100) - 1], pos[min(int((len(pos) - 1) * q / 100) + 2, len(pos) - 1)]
        assert lo - 2 * a.max() / 2048 <= float(p.threshold) <= hi + 1e-6
        np.testing.assert_allclose(p.v0, alpha * p.threshold)
    if method == "max":
        assert float(params[plan.layers[0].name].threshold) == pytest.approx(acts[plan.layers[0].output].max())


def test_per_channel_thresholds_broadcast_against_one_step():
    plan, params, acts = phase1_for(cnn(), inputs((2, 6, 6), n=100), granularity="channel")
    first = params[plan.layers[0].name]
    assert first.threshold.shape == (4, 1, 1)
    per_channel_max = acts[plan.layers[0].output].max(axis=(0, 2, 3))
    assert (first.threshold.reshape(-1) <= per_channel_max + 1e-6).all()


def test_trained_clip_is_the_threshold_and_dead_layers_get_a_safe_one():
    g = GraphBuilder()
    h = g.op("Clip", [g.gemm("x", 4, 8), g.const(np.float32(0)), g.const(np.float32(6))])
    dead = g.op("Mul", [g.gemm(h, 8, 8), g.const(np.float32(0))])
    h = g.relu(g.op("Sub", [dead, g.const(np.float32(1))]))  # always negative: never fires
    g.gemm(h, 8, 2)
    g.nodes[-1].output[0] = "y"
    model = g.model({"x": ["N", 4]}, {"y": ["N", 2]})
    plan, params, _ = phase1_for(model, inputs((4,), n=50))
    clip, silent = (params[layer.name] for layer in plan.layers)
    assert float(clip.threshold) == 6.0 and "trained clip" in clip.source
    assert silent.dead and np.all(silent.threshold > 0) and np.isfinite(silent.threshold).all()
