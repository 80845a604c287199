"""Stage 3: activation statistics of every spiking layer, streamed over the calibration data.

The ANN runs in onnxruntime with every spiking layer's activation exposed as an output. Per layer
(and per channel, axis 1, when asked) we keep, with memory independent of the number of samples:

* the exact maximum and the number of positive values;
* a histogram of the positive values on [0, R) with R = 2**e >= max. When a batch exceeds R, R is
  doubled and pairs of bins merge -- exact, because the coarser grid's edges are edges of the finer
  one. A percentile is read from the cumulative counts with linear interpolation inside its bin, so
  its error is below one bin width, R / bins <= 2 * max / bins.

Percentiles are over the *positive* activations (zeros are ReLU's "off" state; including them
would let a sparse layer's threshold collapse).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx

from .config import Config, Granularity
from .data import Dataset
from .errors import CalibrationError
from .plan import Plan
from .runtime import expose, make_session, run_batches


class StreamingHistogram:
    """Per-channel histograms of positive values with exact power-of-two range doubling."""

    def __init__(self, channels: int, bins: int):
        if bins & (bins - 1):
            bins = 1 << (bins - 1).bit_length()  # a power of two keeps merging exact
        self.bins = bins
        self.counts = np.zeros((channels, bins), dtype=np.int64)
        self.exponent = np.full(channels, np.iinfo(np.int32).min, dtype=np.int64)  # R = 2**exponent
        self.maximum = np.zeros(channels, dtype=np.float64)

    def update(self, values: np.ndarray) -> None:
        """Add ``values`` of shape [channels, n] (non-positive values are ignored)."""
        batch_max = values.max(axis=1, initial=0.0).astype(np.float64)
        self.maximum = np.maximum(self.maximum, batch_max)
        for c in np.flatnonzero(batch_max > 0):
            self._grow(c, batch_max[c])
        rows, cols = np.nonzero(values > 0)
        if rows.size == 0:
            return
        width = np.exp2(self.exponent.astype(np.float64)) / self.bins
        index = np.minimum((values[rows, cols] / width[rows]).astype(np.int64), self.bins - 1)
        flat = np.bincount(rows * self.bins + index, minlength=self.counts.size)
        self.counts += flat.reshape(self.counts.shape)

    def _grow(self, c: int, value: float) -> None:
        needed = max(math.ceil(math.log2(value)), -1000)
        if self.exponent[c] == np.iinfo(np.int32).min:
            self.exponent[c] = needed
            return
        steps = needed - int(self.exponent[c])
        if steps <= 0:
            return
        factor = 1 << min(steps, int(math.log2(self.bins)))
        merged = self.counts[c].reshape(-1, factor).sum(axis=1)
        self.counts[c] = 0
        self.counts[c, :merged.size] = merged
        self.exponent[c] = needed

    def percentile(self, q: float) -> np.ndarray:
        """Per-channel q-th percentile of the positive values (0 where a channel never fired)."""
        out = np.zeros(len(self.counts))
        for c, counts in enumerate(self.counts):
            total = counts.sum()
            if total == 0:
                continue
            if q >= 100.0:
                out[c] = self.maximum[c]
                continue
            rank = q / 100.0 * total
            cum = np.cumsum(counts)
            b = int(np.searchsorted(cum, rank, side="left"))
            below = cum[b - 1] if b else 0
            width = 2.0 ** float(self.exponent[c]) / self.bins
            frac = (rank - below) / counts[b] if counts[b] else 0.0
            out[c] = min((b + frac) * width, self.maximum[c])
        return out


@dataclasses.dataclass
class LayerStats:
    """Statistics of one spiking layer's ANN activation a_l over the calibration data."""

    name: str
    shape: tuple[int, ...]  # one sample's shape, e.g. (C, H, W)
    count: int  # values seen
    positive: int  # values > 0
    tensor: StreamingHistogram  # one channel: the whole tensor
    channel: StreamingHistogram | None  # per channel (axis 1), when asked for

    @property
    def maximum(self) -> float:
        return float(self.tensor.maximum[0])

    def percentile(self, q: float, per_channel: bool = False) -> np.ndarray:
        hist = self.channel if per_channel else self.tensor
        if hist is None:
            raise ValueError("per-channel statistics were not collected")
        return hist.percentile(q)


def collect(model: onnx.ModelProto, plan: Plan, calib: Dataset, config: Config) -> dict[str, LayerStats]:
    """Run the ANN on ``calib`` and gather statistics of every layer of ``plan``."""
    outputs = {layer.output: layer.name for layer in plan.layers}
    session = make_session(expose(model, list(outputs)), config)
    per_channel = config.granularity is Granularity.CHANNEL
    stats: dict[str, LayerStats] = {}
    for _, values in run_batches(session, calib, config.batch_size, list(outputs), "statistics"):
        for tensor, name in outputs.items():
            _update(stats, name, values[tensor], config.histogram_bins, per_channel)
    return stats


def _update(stats, name, a, bins, per_channel):
    if not np.isfinite(a).all():
        raise CalibrationError(f"layer '{name}' produced NaN/Inf activations on the calibration "
                               "data; check the model and the input scaling")
    if name not in stats:
        channels = a.shape[1] if a.ndim >= 2 else 1
        stats[name] = LayerStats(name, tuple(a.shape[1:]), 0, 0, StreamingHistogram(1, bins),
                                 StreamingHistogram(channels, bins) if per_channel else None)
    s = stats[name]
    s.count += a.size
    s.positive += int(np.count_nonzero(a > 0))
    s.tensor.update(a.reshape(1, -1))
    if s.channel is not None:
        by_channel = np.moveaxis(a, 1, 0) if a.ndim >= 2 else a[None]
        s.channel.update(by_channel.reshape(by_channel.shape[0], -1))
