"""The numpy half of ``--fit-weights`` (:mod:`.fit`): one layer's IF neurons as a function of the
weights feeding them, the straight-through gradient of their rate error, and the fit itself.

A :class:`SpikingLayer` holds the layer's input patches ``x_t`` (all T steps) at the fit's neurons
and the ANN activation ``a`` there. For weights ``[W; b]`` the forward pass is the true IF
simulation (reset by subtraction, at most one spike per step) of ``c_t = x_t W + b`` plus the
neuron's bias current, giving ``L = sum (r - a)^2`` with ``r = theta / T * count``; the backward
pass replaces the count by its envelope ``clip((sum_t c_t + v0 + T bias) / theta, 0, T)``:

    dL/dW = sum_n 2 (r_n - a_n) m_n x_bar_n ,   dL/db = sum_n 2 (r_n - a_n) m_n ,
    m_n = 1[0 < sum_t c_t + v0 + T bias < T theta]

:func:`fit_layer` starts from the better, on the held-back rows, of the current weights and their
least-squares refit to the ANN's current ``z`` (ridge towards W), then takes ``ITERATIONS`` Adam
steps, each on one of ``BATCHES`` consecutive slices of the fit rows in turn (mini-batches: the
gradient of ``L`` on a slice is an unbiased-in-expectation estimate of the whole set's, at an
eighth of its cost), and keeps the iterate, checked every ``CHECK_EVERY`` steps, with the lowest
held-back loss.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx_graphsurgeon as gs

from ..snn.params import LayerParams
from .refit import RIDGE
from .targets import LayerTargets

ITERATIONS = 50
BATCHES = 8  # mini-batches per pass over the fit rows
CHECK_EVERY = 10  # steps between held-back checks
LEARNING_RATE = 0.02  # Adam's step, relative to the root mean square of the starting weights


class SpikingLayer:
    """The layer's search neurons as a function of its weights ``[K + 1, C]`` (bias last). Held
    position-major (neuron ``p * C + c``: one GEMM per pass, no transposes), patches as
    ``[samples, steps, P, K]``; ``a``, theta, v0 and bias reordered to match once."""

    def __init__(self, cols: np.ndarray, target: LayerTargets, p: LayerParams, T: int, node: gs.Node):
        self.T, self.node = T, node
        self.cols = np.ascontiguousarray(cols, np.float32)  # [S, steps, P, K], as :func:`_patches` makes them
        self.mean = self.cols.mean(axis=1)  # x_bar patches [S, P, K]
        self.C, self.P, self.K = target.channels, cols.shape[2], cols.shape[3]
        order = (np.arange(self.C)[None, :] * self.P + np.arange(self.P)[:, None]).reshape(-1)
        self.a = np.ascontiguousarray(target.sample[:len(self.cols)][:, order], np.float32)
        self._at = lambda v: np.broadcast_to(np.asarray(v, np.float32), target.shape).reshape(-1)[target.index][order]  # noqa: E731
        self._set(p)

    def _set(self, p: LayerParams) -> None:
        self.theta, self.v0 = self._at(p.threshold), self._at(p.v0)
        self.bias = self._at(p.bias) if p.bias is not None else np.zeros_like(self.theta)

    def with_params(self, p: LayerParams) -> SpikingLayer:
        """The same neurons and inputs with the IF parameters ``p``."""
        other = copy.copy(self)
        other._set(p)
        return other

    def rows(self, rows: slice) -> SpikingLayer:
        """The layer on the samples ``rows`` only (copied: the rest can be freed)."""
        other = copy.copy(self)
        other.cols, other.mean, other.a = self.cols[rows].copy(), self.mean[rows].copy(), self.a[rows].copy()
        return other

    def start(self) -> np.ndarray:
        w = np.asarray(self.node.inputs[1].values, np.float64)
        b = np.asarray(self.node.inputs[2].values, np.float64) if len(self.node.inputs) > 2 else None
        if self.node.op == "Conv":
            wm = w.reshape(w.shape[0], -1).T
        else:
            wm = w.T if int(self.node.attrs.get("transB", 0)) else w
        b = np.zeros(wm.shape[1]) if b is None else np.broadcast_to(b, (wm.shape[1],))
        return np.concatenate([wm, b[None]], 0)

    def unpack(self, wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.asarray(self.node.inputs[1].values)
        wm, b = wb[:-1], wb[-1]
        if self.node.op == "Conv":
            new = wm.T.reshape(w.shape)
        else:
            new = wm.T if int(self.node.attrs.get("transB", 0)) else wm
        return new.astype(w.dtype), b.astype(w.dtype)

    def currents(self, wb: np.ndarray, rows: slice) -> np.ndarray:
        """c_t at the search neurons: [S, steps, P * C] (position-major)."""
        cols = self.cols[rows]
        c = cols.reshape(-1, self.K) @ wb[:-1].astype(np.float32) + wb[-1].astype(np.float32)
        return c.reshape(cols.shape[0], cols.shape[1], -1)

    def rates(self, wb: np.ndarray, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(the IF rates over T [S, n], the sum over T of the input current with v0 and bias)."""
        c = self.currents(wb, rows)
        v = np.broadcast_to(self.v0, (c.shape[0], c.shape[2])).copy()
        count = np.zeros_like(v)
        for t in range(self.T):
            v += c[:, t if c.shape[1] > 1 else 0]
            v += self.bias
            fired = v >= self.theta
            v -= self.theta * fired
            count += fired
        total = c.sum(axis=1) * (self.T if c.shape[1] == 1 else 1) + self.v0 + self.T * self.bias
        return self.theta / self.T * count, total

    def loss(self, wb: np.ndarray, rows: slice) -> float:
        r, _ = self.rates(wb, rows)
        return float(np.sum((r - self.a[rows]) ** 2, dtype=np.float64))

    def gradient(self, wb: np.ndarray, rows: slice) -> tuple[float, np.ndarray]:
        """(L, dL/d[W; b]) by the straight-through envelope (module docstring)."""
        r, total = self.rates(wb, rows)
        err = r - self.a[rows]
        g = (2 * err * ((total > 0) & (total < self.T * self.theta))).reshape(-1, self.C)  # [(S, P), C]
        dw = self.mean[rows].reshape(-1, self.K).T @ g
        db = g.sum(axis=0)
        return float(np.sum(err ** 2, dtype=np.float64)), np.concatenate([dw, db[None]], 0).astype(np.float64)


def fit_layer(layer: SpikingLayer, z: np.ndarray, split: int, rows: int) -> tuple[np.ndarray, float, float]:
    """(the fitted ``[W; b]``, the held-back loss of the current weights, that of the fitted ones):
    the start is the better on the held-back rows of the current weights and their least-squares
    refit to the ANN's current ``z`` on the fit rows; then Adam (module docstring)."""
    w0, held_back = layer.start(), slice(split, rows)
    refit = _least_squares(layer.mean[:split], z, w0)
    before, start = layer.loss(w0, held_back), w0
    if layer.loss(refit, held_back) < before:
        start = refit
    best, after = _adam(layer, start, split, rows)
    return best, before, after


def _least_squares(mean: np.ndarray, z: np.ndarray, w0: np.ndarray) -> np.ndarray:
    """``[W; b]`` minimising ``sum (x_bar W + b - z)^2 + lam ||[W; b] - w0||^2`` over the samples
    and positions (``mean`` [S, P, K]; ``z`` [S, C * P], the targets' channel-major order): the
    refit of the mean current (:mod:`.refit`) at the search neurons, ``lam`` = RIDGE * trace(X^T X) / d.
    Products in float32 (the patches' type), the solve in float64."""
    s, positions, k = mean.shape
    m = mean.reshape(-1, k)
    y = np.swapaxes(z.reshape(s, -1, positions), 1, 2).reshape(s * positions, -1).astype(np.float32)  # [(s, p), C]
    total = m.sum(axis=0, dtype=np.float64)
    xtx = np.block([[(m.T @ m).astype(np.float64), total[:, None]], [total[None], np.full((1, 1), float(len(m)))]])
    xty = np.concatenate([(m.T @ y).astype(np.float64), y.sum(axis=0, dtype=np.float64)[None]], 0)
    lam = RIDGE * np.trace(xtx) / len(xtx)
    return np.linalg.solve(xtx + lam * np.eye(len(xtx)), xty + lam * w0)


def _adam(layer: SpikingLayer, w0: np.ndarray, split: int, rows: int) -> tuple[np.ndarray, float]:
    """Adam from ``w0`` on mini-batches of the first ``split`` rows (``BATCHES`` consecutive
    slices, in turn); of ``w0`` and every ``CHECK_EVERY``-th iterate, the one with the lowest loss
    on the other rows, and that loss."""
    held, size = slice(split, rows), max(1, -(-split // BATCHES))
    batches = [slice(start, min(start + size, split)) for start in range(0, split, size)]
    step = LEARNING_RATE * float(np.sqrt(np.mean(w0[:-1] ** 2)) or 1.0)
    m, v, wb = np.zeros_like(w0), np.zeros_like(w0), w0.copy()
    best, best_loss = w0, layer.loss(w0, held)
    for i in range(1, ITERATIONS + 1):
        _, g = layer.gradient(wb, batches[(i - 1) % len(batches)])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        wb = wb - step * (m / (1 - 0.9 ** i)) / (np.sqrt(v / (1 - 0.999 ** i)) + 1e-12)
        if i % CHECK_EVERY == 0 or i == ITERATIONS:
            loss = layer.loss(wb, held)
            if loss < best_loss:
                best, best_loss = wb.copy(), loss
    return best, best_loss
