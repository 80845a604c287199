"""Streaming statistics: exact max, histogram percentiles within one bin of numpy's, independent
of batch size, bounded memory; collection on a real graph."""

import numpy as np
import pytest

from graphs import cnn, inputs
from onnx2snn import Config, Granularity
from onnx2snn.graph import load
from onnx2snn.data import from_arrays
from onnx2snn.graph.plan import make_plan
from onnx2snn.simulation.runtime import expose, run
from onnx2snn.calibration.stats import StreamingHistogram, collect


def assert_near_percentile(estimate, values, q, width):
    """A histogram cannot place a percentile between two order statistics more finely than its
    bins: the estimate must lie between the neighbouring order statistics, give or take a bin."""
    pos = np.sort(values[values > 0].ravel())
    h = (len(pos) - 1) * q / 100
    low, high = pos[int(np.floor(h))], pos[min(int(np.ceil(h)) + 1, len(pos) - 1)]
    assert low - width - 1e-6 <= estimate <= high + width + 1e-6


@pytest.mark.parametrize("q", [50.0, 99.0, 99.9, 99.99, 100.0])
def test_percentile_within_one_bin_of_numpy(q):
    rng = np.random.default_rng(0)
    # ReLU-like data whose range grows over batches (forces several range doublings)
    batches = [np.maximum(rng.lognormal(0, 1 + i / 4, size=(1, 5000)) - 1.0, 0) for i in range(8)]
    hist = StreamingHistogram(1, 2048)
    for b in batches:
        hist.update(b.astype(np.float32))
    allv = np.concatenate(batches, axis=1).astype(np.float32)
    width = 2.0 ** hist.exponent[0] / hist.bins
    assert_near_percentile(hist.percentile(q)[0], allv, q, width)
    assert hist.maximum[0] == allv.max()
    assert width <= 2 * allv.max() / 2048


def test_batch_size_does_not_change_the_result():
    rng = np.random.default_rng(1)
    data = np.maximum(rng.normal(size=(3, 12000)), 0).astype(np.float32)
    results = []
    for size in (100, 1000, 12000):
        hist = StreamingHistogram(3, 1024)
        for i in range(0, data.shape[1], size):
            hist.update(data[:, i:i + size])
        results.append((hist.percentile(99.9), hist.counts.copy()))
    for p, counts in results[1:]:
        np.testing.assert_array_equal(counts, results[0][1])
        np.testing.assert_array_equal(p, results[0][0])


def test_range_doubling_merges_bins_exactly():
    hist = StreamingHistogram(1, 8)
    hist.update(np.array([[0.1, 0.6, 0.9]], np.float32))  # range 1
    hist.update(np.array([[3.5]], np.float32))  # range 4: bins merge 4:1
    assert hist.exponent[0] == 2
    assert hist.counts.sum() == 4
    # width 0.5 now: 0.1 -> bin 0; 0.6 and 0.9 -> bin 1; 3.5 -> bin 7
    assert hist.counts[0, 0] == 1 and hist.counts[0, 1] == 2 and hist.counts[0, 7] == 1


def test_silent_channels_report_zero_and_memory_is_fixed():
    hist = StreamingHistogram(2, 64)
    size = hist.counts.nbytes
    for _ in range(50):
        hist.update(np.array([[0.0, 0.0], [1.0, 2.0]], np.float32))
    assert hist.percentile(99)[0] == 0.0 and hist.percentile(100)[1] == 2.0
    assert hist.counts.nbytes == size


def test_collect_on_a_cnn_matches_numpy():
    ann = load.normalize(cnn())
    plan = make_plan(ann)
    x = inputs((2, 6, 6), n=300)
    config = Config(batch_size=37, granularity=Granularity.CHANNEL)
    stats = collect(ann, plan, from_arrays({"x": x}, ann), config)
    acts = run(expose(ann, [layer.output for layer in plan.layers]), from_arrays({"x": x}, ann), config)
    for layer in plan.layers:
        a, s = acts[layer.output], stats[layer.name]
        assert s.count == a.size and s.positive == int((a > 0).sum())
        assert s.maximum == pytest.approx(float(a.max()))
        assert_near_percentile(s.percentile(99.0)[0], a, 99.0, 2 * a.max() / config.histogram_bins)
        per_channel = s.percentile(99.0, per_channel=True)
        for c in range(a.shape[1]):
            assert_near_percentile(per_channel[c], a[:, c], 99.0, 2 * a[:, c].max() / config.histogram_bins)
