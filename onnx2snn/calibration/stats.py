"""Stage 3: activation statistics of every spiking layer, streamed over the calibration data.

The ANN runs in onnxruntime with every spiking layer's activation exposed as an output. Per layer
(and per channel, axis 1, when asked) we keep, with memory independent of the number of samples:

* the exact maximum and the number of positive values;
* a histogram of the positive values on [0, R) with R = 2**e > max. When a batch exceeds R, R is
  doubled and pairs of bins merge -- exact, because the coarser grid's edges are edges of the finer
  one. A percentile is read from the cumulative counts with linear interpolation inside its bin, so
  its error is below one bin width, R / bins <= 2 * max / bins.

With per-channel statistics only the channels' histograms are counted; the whole tensor's is
merged from them at the end (:meth:`StreamingHistogram.merged`) -- exactly the histogram counting
the tensor directly would give, as every grid is a power of two aligned at 0 -- and the number of
positive values is the sum of their counts. Each value is read twice (a maximum, a bin).

Percentiles are over the *positive* activations (zeros are ReLU's "off" state; including them
would let a sparse layer's threshold collapse).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx

from ..config import Config, Granularity
from ..data import Dataset
from ..errors import CalibrationError
from ..graph import load
from ..graph.plan import Plan
from ..simulation.budget import Budget
from ..simulation.runtime import expose, make_session, plan_runs, release_memory, run_batches

CHUNK = 1 << 18  # values per step of a histogram update (bounds its temporaries)


class StreamingHistogram:
    """Per-channel histograms of positive values with exact power-of-two range doubling.

    ``dtype`` of the counts: int64, or a narrower unsigned type when the caller knows the counts
    stay below its range (they are exact either way). An update's temporaries are bounded: it
    works on at most :data:`CHUNK` values at a time."""

    def __init__(self, channels: int, bins: int, dtype=np.int64):
        if bins & (bins - 1):
            bins = 1 << (bins - 1).bit_length()  # a power of two keeps merging exact
        self.bins = bins
        self.counts = np.zeros((channels, bins), dtype=dtype)
        self.exponent = np.full(channels, UNSET, dtype=np.int64)  # R = 2**exponent
        self.maximum = np.zeros(channels, dtype=np.float64)

    @property
    def nbytes(self) -> int:
        return self.counts.nbytes

    def update(self, values: np.ndarray) -> None:
        """Add ``values`` of shape [channels, n] (non-positive values are ignored). Raises
        ValueError when a value is NaN or infinite (a channel's maximum then is)."""
        batch_max = values.max(axis=1, initial=0.0).astype(np.float64)
        if not np.isfinite(batch_max).all():
            raise ValueError("NaN or infinite values")
        self.maximum = np.maximum(self.maximum, batch_max)
        self._grow(batch_max)
        width = np.where(self.exponent == UNSET, 1.0, np.exp2(self.exponent.astype(np.float64)) / self.bins)
        width = width.astype(values.dtype)
        rows = max(1, CHUNK // max(values.shape[1], self.bins))  # bounds the block and its bincount
        for r0 in range(0, len(values), rows):
            if not batch_max[r0:r0 + rows].any():
                continue  # no positive value in these channels
            for c0 in range(0, values.shape[1], CHUNK):
                self._add(values[r0:r0 + rows, c0:c0 + CHUNK], width[r0:r0 + rows], r0)

    def _add(self, block: np.ndarray, width: np.ndarray, first: int) -> None:
        """Count the positive values of ``block`` (channels first .. first + len(block))."""
        index = (block / width[:, None]).astype(np.int64)  # < bins for positive values: R > max
        if len(block) > 1:
            index += (np.arange(len(block)) * self.bins)[:, None]
        flat = np.bincount(index[block > 0], minlength=len(block) * self.bins)
        self.counts[first:first + len(block)] += flat.reshape(len(block), self.bins).astype(self.counts.dtype)

    def _grow(self, batch_max: np.ndarray) -> None:
        """Set or widen the range of every channel whose batch maximum needs it: R = 2**e with
        e = frexp's exponent, so R > max exactly; a channel widened by 2**k merges 2**k bins."""
        seen = batch_max > 0
        needed = np.frexp(batch_max)[1].astype(np.int64)
        new = seen & (self.exponent == UNSET)
        self.exponent[new] = needed[new]
        for c in np.flatnonzero(seen & ~new & (needed > self.exponent)):  # rare after the first batches
            factor = 1 << min(int(needed[c] - self.exponent[c]), int(math.log2(self.bins)))
            merged = self.counts[c].reshape(-1, factor).sum(axis=1)
            self.counts[c] = 0
            self.counts[c, :merged.size] = merged
            self.exponent[c] = needed[c]

    def merged(self, dtype=np.int64) -> "StreamingHistogram":
        """The histogram of all channels' values together: each channel's bins merged onto the
        grid of the largest range (exact: the grids are powers of two aligned at 0)."""
        out = StreamingHistogram(1, self.bins, dtype)
        seen = self.exponent != UNSET
        if not seen.any():
            return out
        top = int(self.exponent[seen].max())
        out.exponent[0], out.maximum[0] = top, self.maximum.max()
        total = np.zeros(self.bins, np.int64)
        for c in np.flatnonzero(seen):
            factor = 1 << min(top - int(self.exponent[c]), int(math.log2(self.bins)))
            merged = self.counts[c].reshape(-1, factor).sum(axis=1, dtype=np.int64)
            total[:merged.size] += merged
        out.counts[0] = total
        return out

    def percentile(self, q: float) -> np.ndarray:
        """Per-channel q-th percentile of the positive values (0 where a channel never fired)."""
        out = np.zeros(len(self.counts))
        for c, counts in enumerate(self.counts):
            total = int(counts.sum(dtype=np.int64))
            if total == 0:
                continue
            if q >= 100.0:
                out[c] = self.maximum[c]
                continue
            rank = q / 100.0 * total
            cum = np.cumsum(counts, dtype=np.int64)
            b = int(np.searchsorted(cum, rank, side="left"))
            below = cum[b - 1] if b else 0
            width = 2.0 ** float(self.exponent[c]) / self.bins
            frac = (rank - below) / counts[b] if counts[b] else 0.0
            out[c] = min((b + frac) * width, self.maximum[c])
        return out


UNSET = np.iinfo(np.int32).min  # the exponent of a channel that has had no positive value


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

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes for h in (self.tensor, self.channel) if h is not None)

    def percentile(self, q: float, per_channel: bool = False) -> np.ndarray:
        hist = self.channel if per_channel else self.tensor
        if hist is None:
            raise ValueError("per-channel statistics were not collected")
        return hist.percentile(q)


def collect(model: onnx.ModelProto, plan: Plan, calib: Dataset, config: Config,
            budget: Budget | None = None) -> dict[str, LayerStats]:
    """Run the ANN on ``calib`` and gather statistics of every layer of ``plan``, in runs sized by
    ``budget`` (the histograms are held besides the runs)."""
    budget = budget or Budget(config.memory_limit)
    outputs = {layer.output: layer.name for layer in plan.layers}
    exposed = expose(model, list(outputs))
    per_channel = config.granularity is Granularity.CHANNEL
    held = held_bytes(model, plan, len(calib), config)
    size = plan_runs(budget, "statistics", exposed, list(outputs), len(calib), config, held)
    session = make_session(exposed, config)
    stats: dict[str, LayerStats] = {}
    for _, values in run_batches(session, calib, size.samples, list(outputs), "statistics"):
        for tensor, name in outputs.items():
            _update(stats, name, values[tensor], config.histogram_bins, per_channel, len(calib))
    del session
    release_memory()
    for s in stats.values():
        _finish(s, len(calib))
    budget.hold(sum(s.nbytes for s in stats.values()))  # kept for the rest of the conversion
    return stats


HISTOGRAM_WORK = 48 * CHUNK  # an update's temporaries: about 40 bytes per value of a chunk


def held_bytes(model: onnx.ModelProto, plan: Plan, samples: int, config: Config) -> int:
    """What the statistics hold besides their runs: every layer's histograms and an update's work."""
    shapes = load.sample_shapes(model, infer=False)
    per_channel = config.granularity is Granularity.CHANNEL
    return HISTOGRAM_WORK + sum(_histogram_bytes(shapes.get(layer.output, ()), samples, config.histogram_bins,
                                                 per_channel) for layer in plan.layers)


def _count_dtype(values_per_channel: int):
    """Counts of at most ``values_per_channel`` fit uint32 when below 2^32 (else int64)."""
    return np.uint32 if values_per_channel < (1 << 32) else np.int64


def _histogram_bytes(shape: tuple[int, ...], samples: int, bins: int, per_channel: bool) -> int:
    """Bytes of one layer's histograms (tensor-wise, and per channel when asked)."""
    size = int(np.prod(shape)) if shape else 1
    channels = shape[0] if len(shape) >= 1 else 1
    total = bins * 8
    if per_channel:
        total += channels * bins * np.dtype(_count_dtype(size // max(channels, 1) * samples)).itemsize
    return int(total)


def _update(stats, name, a, bins, per_channel, samples):
    """Count one batch ``a`` of layer ``name``: its channels' histograms, or the tensor's."""
    if name not in stats:
        per = a[0].size
        channels = a.shape[1] if a.ndim >= 2 else 1
        hist = (StreamingHistogram(channels, bins, _count_dtype(per // channels * samples)) if per_channel
                else StreamingHistogram(1, bins, _count_dtype(per * samples)))
        stats[name] = LayerStats(name, tuple(a.shape[1:]), 0, 0, None if per_channel else hist,
                                 hist if per_channel else None)
    s = stats[name]
    s.count += a.size
    try:
        if not per_channel:
            s.tensor.update(a.reshape(1, -1))
        elif a.size <= CHUNK:  # small: channels first in one copy
            by_channel = np.moveaxis(a, 1, 0) if a.ndim >= 2 else a[None]
            s.channel.update(by_channel.reshape(by_channel.shape[0], -1))
        else:
            for sample in a:  # large: [C, ...] of one sample at a time, a view (no copy of the batch)
                s.channel.update(sample.reshape(sample.shape[0], -1) if sample.ndim else sample.reshape(1, 1))
    except ValueError:
        raise CalibrationError(f"layer '{name}' produced NaN/Inf activations on the calibration "
                               "data; check the model and the input scaling") from None


def _finish(s: LayerStats, samples: int) -> None:
    """The whole tensor's histogram from the channels' (when per channel) and the positive count."""
    hist = s.channel if s.channel is not None else s.tensor
    s.positive = int(hist.counts.sum(dtype=np.int64))
    if s.tensor is None:
        s.tensor = s.channel.merged(_count_dtype(s.count))
