"""Phase 2 for one layer (steps 1-4 of :mod:`.calibrate`): search, measure, correct, commit.

The layer's currents come block by block from :class:`.currents.LayerRuns`; the IF simulations of
the search set run in :class:`.if_kernel.IFKernel`, several candidates side by side.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import Config, Granularity
from ..snn.params import LayerParams, with_charge
from .currents import LayerRuns
from .if_kernel import IFKernel
from .targets import Targets


@dataclasses.dataclass(frozen=True)
class LayerFit:
    """What phase 2 did to one layer; errors are mean squared (r - a) on the search samples."""

    name: str
    mse_phase1: float  # phase-1 parameters, on the calibrated SNN's inputs
    mse_searched: float  # after the threshold / initial potential search
    mse_final: float  # after bias and potential correction (if kept)
    corrected: bool
    refit: bool = False  # the weights feeding this layer were refitted (--refit-weights)
    weights_change: float | None = None  # --fit-weights kept a fit: ||W' - W|| / ||W||



class LayerFitter:
    """Search, correct and commit one layer, reading its currents block by block."""

    def __init__(self, runs: LayerRuns, targets: Targets, name: str, config: Config, kernel: IFKernel):
        self.runs, self.config, self.kernel = runs, config, kernel
        self.T, self.target = config.T, targets.layer(name)
        self.steps = 1 if runs.constant else config.T  # a constant current is kept once, not T times
        self.per_channel = config.granularity is Granularity.CHANNEL
        self._total = None  # sum over the T steps of the search currents (set by ``fit``)

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
        if better:  # else the spikes stored by the measure pass are the layer's
            self._commit(name, final)
        self.runs.clear()
        size = self.target.sample.size
        return final, LayerFit(self.target.name, sse1 / size, sse_s / size, (sse_c if better else sse_s) / size,
                               better)

    def _search_currents(self) -> np.ndarray:
        """Currents of the search samples at the search neurons: [T (or 1), S, n], gathered from
        the blocks that hold search samples."""
        index, rows = self.target.index, self.target.sample.shape[0]
        every = index.size == int(np.prod(self.target.shape))  # search_neurons gives arange(n) then
        out = np.empty((self.steps, rows, index.size), np.float32)
        for block, current in self.runs:
            if block.start >= rows:
                break
            if self.runs.constant and block.t0:
                continue
            take = min(block.stop, rows) - block.start
            flat = current[:, :take].reshape(current.shape[0], take, -1)
            t = slice(0, 1) if self.runs.constant else slice(block.t0, block.t1)
            out[t, block.start:block.start + take] = flat if every else np.take(flat, index, axis=2)
            del current, flat
        return out

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
        grid = self.config.search_scales
        scales = [LayerParams(p1.threshold * np.float32(g), p1.v0 * np.float32(g), "phase 2 search",
                              bias=None if p1.bias is None else p1.bias * np.float32(g), reset=p1.reset)
                  for g in grid]
        scores = self._sse(search, scales, self.per_channel)
        sse1 = float(np.sum(scores[grid.index(1.0)])) if p1.bias is None else self._sse(search, [p1])[0]
        best = self._pick(scales, scores)
        alphas = [self._params(best.threshold, a) for a in self.config.search_alphas]
        known = next((i for i, c in enumerate(alphas) if np.array_equal(c.v0, best.v0) and _same(c.bias, best.bias)),
                     None)
        best_score = np.min(np.stack(scores), axis=0)  # the score of ``best`` (per channel: its channels')
        scores = self._sse(search, [c for i, c in enumerate(alphas) if i != known], self.per_channel)
        if known is not None:  # alpha = phase 1's: that candidate is ``best``, already scored
            scores.insert(known, best_score)
        return self._pick(alphas, scores), sse1, float(np.sum(np.min(np.stack(scores), axis=0)))

    def _params(self, theta, alpha) -> LayerParams:
        theta = np.asarray(theta, dtype=np.float32)
        alpha = np.asarray(alpha, dtype=np.float32)
        profile = self.config.profile
        return with_charge(theta, alpha, self.T, profile.initial_potential, "phase 2 search", reset=profile.reset)

    def _pick(self, candidates: list[LayerParams], scores) -> LayerParams:
        if not self.per_channel:
            return candidates[int(np.argmin(scores))]
        choice = np.argmin(np.stack(scores), axis=0)  # best candidate per channel
        pick = lambda attr: np.choose(choice, [np.broadcast_to(  # noqa: E731
            getattr(c, attr).reshape(-1), (self.target.channels,)) for c in candidates])
        shape = (-1,) + (1,) * (len(self.target.shape) - 1)
        bias = pick("bias").reshape(shape).astype(np.float32) if candidates[0].bias is not None else None
        return LayerParams(pick("threshold").reshape(shape).astype(np.float32),
                           pick("v0").reshape(shape).astype(np.float32), "phase 2 search", bias=bias,
                           reset=candidates[0].reset)

    def _corrected(self, p: LayerParams, mean_rate: np.ndarray) -> LayerParams:
        """Per-channel bias b_c = E_c[a] - E_c[r] (a current added at every step) and per-neuron
        potential v0 += T * (E[a] - E[r] - b_c) for what the channel bias leaves (bias only when the
        target has no initial potential: v0 stays as searched, 0)."""
        err = self.target.mean - mean_rate  # E[a] - E[r], per neuron
        axes = tuple(range(1, err.ndim))
        bias = err.mean(axis=axes, keepdims=True) if axes else err.copy()
        v0 = np.broadcast_to(p.v0, err.shape) + (self.T * (err - bias) if self.config.profile.initial_potential else 0)
        if p.bias is not None:
            bias = bias + p.bias
        return LayerParams(p.threshold, v0.astype(np.float32), "phase 2 (search + bias + potential)",
                           bias=bias.astype(np.float32), reset=p.reset)

    def _measure(self, name: str, p: LayerParams) -> np.ndarray:
        """E[r] per neuron over all calibration samples with parameters ``p``; the spikes are
        stored as the layer's (``_commit`` replaces them if the correction is kept)."""
        return self._store_spikes(name, p) * (np.asarray(p.threshold, np.float64) / self.T)

    def _commit(self, name: str, p: LayerParams) -> None:
        """Store the layer's spikes with ``p`` as later layers' input, replacing the measured ones."""
        self._store_spikes(name, p)

    def _store_spikes(self, name: str, p: LayerParams) -> np.ndarray:
        """Simulate the layer with ``p`` on every block (the potential carried from one chunk of
        steps to the next), store its spikes (bit-packed) and return the mean spike count per
        neuron (counts are integers: their float64 sum is exact in any order)."""
        total, n, v = np.zeros(self.target.shape, np.float64), 0, None
        theta = np.asarray(p.threshold, np.float32)
        for block, current in self.runs:
            start = p.v0 if block.t0 == 0 else v
            count, fired, v = self.kernel.run(current, p.threshold, start, p.bias, keep=True, steps=block.steps,
                                              potential=True)
            total += count.sum(axis=0)
            n += block.samples if block.t1 == self.T else 0
            self.runs.store.put(name, block, fired, theta.astype(current.dtype))
            del current, count, fired
        return total / n


def _same(a, b) -> bool:
    """Two optional parameter arrays are equal (both None, or equal values)."""
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
