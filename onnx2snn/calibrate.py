"""Stage 6, phase 2 (error optimisation): fit every spiking layer to the SNN's own inputs.

Layer by layer in topological order, the earlier layers already calibrated and their spike trains
cached, with a_l the ANN activation and r_l = theta * (spike count) / T the SNN rate of layer l:

1. **Search** (first ``search_samples`` calibration samples, up to ``search_neurons`` neurons):
   threshold theta = f * theta_1 and v(0) = alpha * theta minimising sum (r_l - a_l)^2 over a grid
   of f, then of alpha (per layer, or per channel).
2. **Correction** (means over all calibration samples): per-channel bias current
   ``b_c = E_c[a] - E_c[r]`` added at every step, and per-neuron potential
   ``v0 += T * (E[a] - E[r] - b_c)`` for what the channel bias leaves (Li et al. 2021).
3. **Commit**: the layer's spikes with the final parameters are cached as later layers' input. If the
   corrections fit the search samples worse than the searched parameters, they are dropped.

Because each layer is fitted to the spikes it will really receive, errors of earlier layers are
compensated instead of accumulated. No gradients, no change of the user's weights. Each layer's
segment runs at most twice over the calibration data (once when its currents fit in
``CURRENT_CACHE_BYTES``).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx

from .config import Config, Granularity
from .data import Dataset
from .ops.if_neuron import if_forward
from .plan import Plan
from .progress import progress
from .rewrite import to_snn
from .refit import refit_layer
from .segments import Segment, SpikeCache
from .targets import Targets, ann_targets
from .thresholds import LayerParams

log = logging.getLogger(__name__)

SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25)
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7)
CURRENT_CACHE_BYTES = 1 << 30
CORRECTION_ROUNDS = 2


@dataclasses.dataclass(frozen=True)
class LayerFit:
    """What phase 2 did to one layer; errors are mean squared (r - a) on the search samples."""

    name: str
    mse_phase1: float  # phase-1 parameters, on the calibrated SNN's inputs
    mse_searched: float  # after the threshold / initial potential search
    mse_final: float  # after bias and potential correction (if kept)
    corrected: bool
    refit: bool = False  # the weights feeding this layer were refitted (--refit-weights)


def phase2(ann: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], calib: Dataset,
           config: Config) -> tuple[dict[str, LayerParams], list[LayerFit], onnx.ModelProto]:
    """Calibrated parameters for every layer of ``plan`` (see module docstring).

    Returns the parameters, what was done per layer, and the ANN to rewrite: ``ann`` itself, or a
    copy with refitted weights when ``config.refit_weights``.
    """
    work, snn = ann, to_snn(ann, plan, params, config.T)
    targets = ann_targets(ann, plan, calib, config)
    batches = list(calib.batches(config.batch_size))
    names = [layer.output for layer in plan.layers]
    needs = [Segment(snn, layer.current, set(names[:i]), None).inputs for i, layer in enumerate(plan.layers)]
    last_use = {n: max([i for i, inputs in enumerate(needs) if n in inputs], default=-1) for n in names}
    cache, fitted, fits = SpikeCache(), dict(params), []
    for i, layer in enumerate(progress(plan.layers, total=len(plan.layers), desc="phase 2")):
        refit = None
        if config.refit_weights:
            refit = refit_layer(work, ann, snn, layer.current, plan.time_major, set(names[:i]), batches,
                                cache, config)
            if refit is not None:
                work, snn = refit, to_snn(refit, plan, params, config.T)
        segment = Segment(snn, layer.current, set(names[:i]), config)
        fitter = _LayerFitter(segment, batches, cache, targets, layer.name, config,
                              constant=layer.current not in plan.time_major)
        fitted[layer.name], fit = fitter.fit(params[layer.name])
        fitter.commit(layer.output, fitted[layer.name])
        fits.append(dataclasses.replace(fit, refit=refit is not None))
        log.debug("phase 2 %s: mse %.4g -> %.4g", layer.name, fit.mse_phase1, fit.mse_final)
        for name in names[: i + 1]:
            if last_use[name] <= i:
                cache.drop(name)
    return fitted, fits, work


class _LayerFitter:
    """Search, correct and commit one layer, reading its currents batch by batch."""

    def __init__(self, segment, batches, cache, targets: Targets, name, config: Config, constant: bool):
        self.segment, self.batches, self.cache, self.config = segment, batches, cache, config
        self.T, self.target = config.T, targets.layer(name)
        self.steps = 1 if constant else config.T  # a constant current is kept once, not T times
        self.per_channel = config.granularity is Granularity.CHANNEL
        self._kept: dict[int, np.ndarray] = {}
        self._budget = CURRENT_CACHE_BYTES

    def currents(self):
        """Yield (batch index, currents [steps, B, *shape]), steps = T, or 1 for a current that is
        the same at every step (direct encoding); kept in memory while they fit the budget."""
        for b, (_, feed) in enumerate(self.batches):
            if b in self._kept:
                yield b, self._kept[b]
                continue
            feeds = dict(feed)
            feeds.update({n: self.cache.get(n, b) for n in self.segment.inputs if n in self.cache})
            current = self.segment.run(feeds)
            current = current.reshape(self.steps, -1, *current.shape[1:])
            if current.nbytes <= self._budget:
                self._kept[b] = current
                self._budget -= current.nbytes
            yield b, current

    def fit(self, p1: LayerParams) -> tuple[LayerParams, LayerFit]:
        search = self._search_currents()
        mse = lambda p: self._sse(search, p) / self.target.sample.size  # noqa: E731
        mse1 = mse(p1)
        best = self._search(search, p1)
        mse_s = best_mse = mse(best)
        for _ in range(CORRECTION_ROUNDS):
            corrected = self._correct(best)
            mse_c = mse(corrected)
            if mse_c >= best_mse:
                break
            best, best_mse = corrected, mse_c
        return best, LayerFit(self.target.name, mse1, mse_s, best_mse, best_mse < mse_s)

    def _search_currents(self) -> np.ndarray:
        """Currents of the search samples at the search neurons: [T, S, n]."""
        parts, have = [], 0
        for _, current in self.currents():
            flat = current.reshape(self.steps, current.shape[1], -1)[:, :, self.target.index]
            parts.append(flat[:, : self.target.sample.shape[0] - have])
            have += parts[-1].shape[1]
            if have >= self.target.sample.shape[0]:
                break
        return np.concatenate(parts, axis=1)

    def _rates(self, current: np.ndarray, p: LayerParams, flat_index=None) -> np.ndarray:
        """Rates [B, n] (or [B, *shape]) of IF neurons driven by ``current`` [steps, B, ...].

        Same float operations as the IFNeuron function body: u = v + (x + b); fire where
        u >= theta; v = u - theta where fired."""
        theta, v0, bias = (self._at(x, flat_index) for x in (p.threshold, p.v0, p.bias))
        theta = np.asarray(theta, current.dtype)
        if bias is not None:
            current = current + np.asarray(bias, current.dtype)
        v = np.array(np.broadcast_to(v0, current.shape[1:]), dtype=current.dtype)
        count = np.zeros(current.shape[1:], dtype=np.float32)
        for t in range(self.T):
            np.add(v, current[min(t, len(current) - 1)], out=v)
            fired = v >= theta
            np.subtract(v, theta, out=v, where=fired)
            count += fired
        return count * (theta / self.T)

    def _at(self, value, flat_index):
        """Broadcast a per-layer/channel/neuron parameter to one sample, optionally subsampled."""
        if value is None or flat_index is None:
            return value
        full = np.broadcast_to(value, self.target.shape).reshape(-1)
        return full[flat_index].astype(np.float32)

    def _sse(self, search: np.ndarray, p: LayerParams, per_channel: bool = False):
        err = (self._rates(search, p, self.target.index) - self.target.sample) ** 2
        if not per_channel:
            return float(err.sum())
        return np.bincount(self.target.channel, weights=err.sum(axis=0), minlength=self.target.channels)

    def _search(self, search: np.ndarray, p1: LayerParams) -> LayerParams:
        best = p1
        for grid, make in ((SCALES, lambda g, p: self._params(p1.threshold * g, 0.5)),
                           (ALPHAS, lambda g, p: self._params(p.threshold, g))):
            candidates = [make(g, best) for g in grid]
            scores = [self._sse(search, c, self.per_channel) for c in candidates]
            best = self._pick(candidates, scores)
        return best

    def _params(self, theta, alpha) -> LayerParams:
        theta = np.asarray(theta, dtype=np.float32)
        alpha = np.asarray(alpha, dtype=np.float32)
        return LayerParams(theta, (alpha * theta).astype(np.float32), "phase 2 search")

    def _pick(self, candidates: list[LayerParams], scores) -> LayerParams:
        if not self.per_channel:
            return candidates[int(np.argmin(scores))]
        choice = np.argmin(np.stack(scores), axis=0)  # best candidate per channel
        pick = lambda attr: np.choose(choice, [np.broadcast_to(  # noqa: E731
            getattr(c, attr).reshape(-1), (self.target.channels,)) for c in candidates])
        shape = (-1,) + (1,) * (len(self.target.shape) - 1)
        return LayerParams(pick("threshold").reshape(shape).astype(np.float32),
                           pick("v0").reshape(shape).astype(np.float32), "phase 2 search")

    def _correct(self, p: LayerParams) -> LayerParams:
        """Per-channel bias and per-neuron potential from the mean error over all samples."""
        total, n = np.zeros(self.target.shape, np.float64), 0
        for _, current in self.currents():
            total += self._rates(current, p).sum(axis=0)
            n += current.shape[1]
        err = self.target.mean - total / n  # E[a] - E[r], per neuron
        axes = tuple(range(1, err.ndim))
        bias = err.mean(axis=axes, keepdims=True) if axes else err.copy()
        v0 = np.broadcast_to(p.v0, err.shape) + self.T * (err - bias)
        if p.bias is not None:
            bias = bias + p.bias
        return LayerParams(p.threshold, v0.astype(np.float32), "phase 2 (search + bias + potential)",
                           bias=bias.astype(np.float32))

    def commit(self, name: str, p: LayerParams) -> None:
        for b, current in self.currents():
            theta = np.asarray(p.threshold, current.dtype)
            x = current + np.asarray(p.bias, current.dtype) if p.bias is not None else current
            x = np.broadcast_to(x, (self.T,) + x.shape[1:])
            rows = x.reshape(-1, *x.shape[2:])
            spikes, _ = if_forward(rows, theta, np.asarray(p.v0, current.dtype), self.T)
            self.cache.put(name, b, spikes, theta)
        self._kept.clear()
