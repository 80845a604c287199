"""Stage 6, phase 2 (error optimisation): fit every spiking layer to the SNN's own inputs.

Layer by layer in topological order, the earlier layers already calibrated and their spike trains
cached, with a_l the ANN activation and r_l = theta * (spike count) / T the SNN rate of layer l:

1. **Search** (the search set of :mod:`.targets`: up to 256 samples or a tenth, up to 2,048 neurons):
   threshold theta = f * theta_1 and v(0) = alpha * theta minimising sum (r_l - a_l)^2 over a grid
   of f, then of alpha (per layer, or per channel).
2. **Measure**: E[r] per neuron with the searched parameters on all phase-2 samples; their spikes
   are cached (kept as the layer's if step 3 is rejected).
3. **Correction**: per-channel bias current ``b_c = E_c[a] - E_c[r]`` added at every step, and
   per-neuron potential ``v0 += T * (E[a] - E[r] - b_c)`` for what the channel bias leaves
   (Li et al. 2021), kept only if it lowers the error on the search set.
4. **Commit**: if the correction is kept, the layer's spikes with the corrected parameters replace
   the cached ones (bit-packed) as later layers' input.

Because each layer is fitted to the spikes it will really receive, errors of earlier layers are
compensated instead of accumulated. No gradients, no change of the user's weights. Each layer's
segment computes its currents once and they are kept while they fit in ``CURRENT_CACHE_BYTES``;
beyond that they are recomputed for each pass (search prefix, measure, commit). Cost per layer:
about one segment run, one IF simulation of the calibration set (:mod:`.if_kernel`) plus one more
if the correction is kept, and 13 IF simulations of the search set (8 scales, 4 alphas -- the
fifth is the best scale itself --, the correction), each returning only its per-neuron squared
error, a grid's candidates side by side on the worker threads; phase 1's and the searched errors
come from the grid.
At the end the network's output on the search set is read from the cached spikes, for the
network-level check (:mod:`.guard`). Phase 2 uses the first ``config.phase2_samples`` samples.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx

from .config import Config, Granularity
from .data import Dataset
from .evaluation import score_output
from .plan import Plan
from .progress import progress
from .rewrite import to_snn
from .if_kernel import IFKernel
from .refit import refit_layer
from .segments import Segment, SpikeCache, segment_inputs
from .targets import Targets, ann_targets
from .thresholds import LayerParams

log = logging.getLogger(__name__)

SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25)
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7)
CURRENT_CACHE_BYTES = 2 << 30


@dataclasses.dataclass(frozen=True)
class LayerFit:
    """What phase 2 did to one layer; errors are mean squared (r - a) on the search samples."""

    name: str
    mse_phase1: float  # phase-1 parameters, on the calibrated SNN's inputs
    mse_searched: float  # after the threshold / initial potential search
    mse_final: float  # after bias and potential correction (if kept)
    corrected: bool
    refit: bool = False  # the weights feeding this layer were refitted (--refit-weights)


@dataclasses.dataclass
class Phase2:
    """Phase 2's result: parameters per layer, what was done per layer, the ANN to rewrite
    (``ann`` itself, or a copy with refitted weights), and on the search set the score output
    ``score`` of the ANN and of the calibrated SNN (from the cached spikes, no extra SNN run)."""

    params: dict[str, LayerParams]
    fits: list[LayerFit]
    model: onnx.ModelProto
    score: str
    ann_scores: np.ndarray
    snn_scores: np.ndarray


def phase2(ann: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], calib: Dataset,
           config: Config) -> Phase2:
    """Calibrated parameters for every layer of ``plan`` (see module docstring)."""
    calib = calib.head(config.phase2_samples)
    work, snn = ann, to_snn(ann, plan, params, config.T)
    score = score_output(ann)
    targets = ann_targets(ann, plan, calib, config, score=score)
    batches = list(calib.batches(config.batch_size))
    names = [layer.output for layer in plan.layers]
    needs = [segment_inputs(snn, layer.current, set(names[:i])) for i, layer in enumerate(plan.layers)]
    needs.append(segment_inputs(snn, score, set(names)))  # the score output, read at the end
    last_use = {n: max([i for i, inputs in enumerate(needs) if n in inputs], default=-1) for n in names}
    cache, fitted, fits = SpikeCache(), dict(params), []
    with IFKernel(config.T, config) as kernel:
        for i, layer in enumerate(progress(plan.layers, total=len(plan.layers), desc="phase 2")):
            refit = None
            if config.refit_weights:
                refit = refit_layer(work, ann, snn, layer.current, plan.time_major, set(names[:i]), batches,
                                    cache, config)
                if refit is not None:
                    work, snn = refit, to_snn(refit, plan, params, config.T)
            segment = Segment(snn, layer.current, set(names[:i]), config)
            fitter = _LayerFitter(segment, batches, cache, targets, layer.name, config,
                                  constant=layer.current not in plan.time_major, kernel=kernel)
            fitted[layer.name], fit = fitter.fit(params[layer.name], layer.output)
            fits.append(dataclasses.replace(fit, refit=refit is not None))
            log.debug("phase 2 %s: mse %.4g -> %.4g", layer.name, fit.mse_phase1, fit.mse_final)
            for name in names[: i + 1]:
                if last_use[name] <= i:
                    cache.drop(name)
    snn_scores = _search_scores(Segment(snn, score, set(names), config), batches, cache, len(targets.scores))
    return Phase2(fitted, fits, work, score, targets.scores, snn_scores)


def _search_scores(segment: Segment, batches, cache: SpikeCache, rows: int) -> np.ndarray:
    """The calibrated SNN's output on the first ``rows`` samples, computed from the cached spikes."""
    return _first_rows((segment.run_cached(feed, cache, b) for b, (_, feed) in enumerate(batches)), rows)


def _first_rows(parts, rows: int, axis: int = 0) -> np.ndarray:
    """The first ``rows`` entries along ``axis`` of the arrays ``parts`` yields, concatenated;
    ``parts`` (e.g. a generator running a segment per batch) is not read further than needed."""
    taken, have = [], 0
    for part in parts:
        taken.append(part[(slice(None),) * axis + (slice(0, rows - have),)])
        have += taken[-1].shape[axis]
        if have >= rows:
            break
    return np.concatenate(taken, axis=axis)


class _LayerFitter:
    """Search, correct and commit one layer, reading its currents batch by batch."""

    def __init__(self, segment, batches, cache, targets: Targets, name, config: Config, constant: bool,  # noqa: PLR0913
                 kernel):
        self.segment, self.batches, self.cache, self.config = segment, batches, cache, config
        self.T, self.target = config.T, targets.layer(name)
        self.steps = 1 if constant else config.T  # a constant current is kept once, not T times
        self.per_channel = config.granularity is Granularity.CHANNEL
        self.kernel = kernel
        self._kept: dict[int, np.ndarray] = {}
        self._budget = CURRENT_CACHE_BYTES
        self._total = None  # sum over the T steps of the search currents (set by ``fit``)

    def currents(self):
        """Yield (batch index, currents [steps, B, *shape]), steps = T, or 1 for a current that is
        the same at every step (direct encoding); kept in memory while they fit the budget."""
        for b, (_, feed) in enumerate(self.batches):
            if b in self._kept:
                yield b, self._kept[b]
                continue
            current = self.segment.run_cached(feed, self.cache, b)
            current = current.reshape(self.steps, -1, *current.shape[1:])
            if current.nbytes <= self._budget:
                self._kept[b] = current
                self._budget -= current.nbytes
            yield b, current

    def fit(self, p1: LayerParams, name: str) -> tuple[LayerParams, LayerFit]:
        """Search, measure E[rate] with the searched parameters, correct, and commit the
        correction only if it lowers the error on the search set."""
        search = self._search_currents()
        self._total = self.kernel.total(search)
        searched, sse1, sse_s = self._search(search, p1)
        corrected = self._corrected(searched, self._measure(name, searched))
        sse_c = self._sse(search, [corrected])[0]
        better = sse_c < sse_s * (1 - 1e-9)  # by more than float64 summation order
        final = corrected if better else searched
        if better:  # else the spikes cached by the measure pass are the layer's
            self._commit(name, final)
        self._kept.clear()
        size = self.target.sample.size
        return final, LayerFit(self.target.name, sse1 / size, sse_s / size, (sse_c if better else sse_s) / size,
                               better)

    def _search_currents(self) -> np.ndarray:
        """Currents of the search samples at the search neurons: [T, S, n]."""
        index = self.target.index
        every = index.size == int(np.prod(self.target.shape))  # search_neurons gives arange(n) then
        flat = (c.reshape(self.steps, c.shape[1], -1) for _, c in self.currents())
        return _first_rows((f if every else np.take(f, index, axis=2) for f in flat),
                           self.target.sample.shape[0], axis=1)

    def _at(self, value):
        """A per-layer/channel/neuron parameter at the search neurons (None stays None)."""
        if value is None:
            return value
        return np.broadcast_to(value, self.target.shape).reshape(-1)[self.target.index].astype(np.float32)

    def _sse(self, search: np.ndarray, candidates: list[LayerParams], per_channel: bool = False) -> list:
        """sum (r - a)^2 on the search set for each candidate: in total, or (``per_channel``) per
        channel (the kernel runs the candidates side by side)."""
        params = [tuple(self._at(x) for x in (p.threshold, p.v0, p.bias)) for p in candidates]
        errors = self.kernel.sse(search, self._total, self.target.sample, params)
        if not per_channel:
            return [float(e.sum(dtype=np.float64)) for e in errors]
        return [np.bincount(self.target.channel, weights=e, minlength=self.target.channels) for e in errors]

    def _search(self, search: np.ndarray, p1: LayerParams) -> tuple[LayerParams, float, float]:
        """Grid search: theta = f * theta_1 (v0 scaled with it, so f = 1 is phase 1), then
        v0 = alpha * theta; per channel or per layer. The alpha that gives the best scale's own v0
        (phase 1's alpha) is not simulated again. Returns the best parameters and the summed
        squared errors of phase 1 and of the best (taken from the grid, no extra simulation)."""
        scales = [LayerParams(p1.threshold * np.float32(g), p1.v0 * np.float32(g), "phase 2 search")
                  for g in SCALES]
        scores = self._sse(search, scales, self.per_channel)
        sse1 = float(np.sum(scores[SCALES.index(1.0)])) if p1.bias is None else self._sse(search, [p1])[0]
        best = self._pick(scales, scores)
        alphas = [self._params(best.threshold, a) for a in ALPHAS]
        known = next((i for i, c in enumerate(alphas) if np.array_equal(c.v0, best.v0)), None)
        best_score = np.min(np.stack(scores), axis=0)  # the score of ``best`` (per channel: its channels')
        scores = self._sse(search, [c for i, c in enumerate(alphas) if i != known], self.per_channel)
        if known is not None:  # alpha = phase 1's: that candidate is ``best``, already scored
            scores.insert(known, best_score)
        return self._pick(alphas, scores), sse1, float(np.sum(np.min(np.stack(scores), axis=0)))

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

    def _corrected(self, p: LayerParams, mean_rate: np.ndarray) -> LayerParams:
        """Per-channel bias b_c = E_c[a] - E_c[r] (a current added at every step) and per-neuron
        potential v0 += T * (E[a] - E[r] - b_c) for what the channel bias leaves."""
        err = self.target.mean - mean_rate  # E[a] - E[r], per neuron
        axes = tuple(range(1, err.ndim))
        bias = err.mean(axis=axes, keepdims=True) if axes else err.copy()
        v0 = np.broadcast_to(p.v0, err.shape) + self.T * (err - bias)
        if p.bias is not None:
            bias = bias + p.bias
        return LayerParams(p.threshold, v0.astype(np.float32), "phase 2 (search + bias + potential)",
                           bias=bias.astype(np.float32))

    def _measure(self, name: str, p: LayerParams) -> np.ndarray:
        """E[r] per neuron over all calibration samples with parameters ``p``; the spikes are
        cached as the layer's (``_commit`` replaces them if the correction is kept)."""
        return self._cache_spikes(name, p) * (np.asarray(p.threshold, np.float64) / self.T)

    def _commit(self, name: str, p: LayerParams) -> None:
        """Cache the layer's spikes with ``p`` as later layers' input, replacing the measured ones."""
        self._cache_spikes(name, p)

    def _cache_spikes(self, name: str, p: LayerParams) -> np.ndarray:
        """Simulate the layer with ``p`` on every calibration batch, cache its spikes (bit-packed)
        and return the mean spike count per neuron."""
        total, n = np.zeros(self.target.shape, np.float64), 0
        theta = np.asarray(p.threshold, np.float32)
        for b, current in self.currents():
            count, fired = self.kernel.run(current, p.threshold, p.v0, p.bias, keep=True)
            total += count.sum(axis=0)
            n += current.shape[1]
            self.cache.put(name, b, fired, theta.astype(current.dtype))
        return total / n
