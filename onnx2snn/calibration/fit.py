"""Phase 2, step b (``--fit-weights``): fit a layer's weights through its spiking neurons.

For a spiking layer whose current is the output of one Conv (groups 1, 1-D or 2-D) or Gemm,
``c_t = W x_t + b`` (``x_t``: that op's input at step t in the SNN whose earlier layers are already
calibrated), the layer's rate ``r = theta / T * count_T(IF(c; theta, v0, bias))`` is fitted to the
ANN activation ``a`` on the search set (samples and neurons of :mod:`.targets`):

    min_{W, b}  L = sum (r - a)^2

The forward pass is the true IF simulation (reset by subtraction, at most one spike per step), so
L is the SNN's own error. The backward pass replaces the spike count by its piecewise-linear
envelope ``clip((sum_t c_t + v0 + T bias) / theta, 0, T)`` (a straight-through estimate), whose
derivative is ``1 / theta`` inside ``(0, T theta)`` and 0 outside; with ``sum_t c_t = T (W x_bar + b)``:

    dL/dW_o = sum_n 2 (r_n - a_n) m_n x_bar_n ,   dL/db_o = sum_n 2 (r_n - a_n) m_n ,
    m_n = 1[0 < sum_t c_t + v0 + T bias < T theta]

over the neurons n of output channel o (``x_bar``: the mean over T of the input patch at the
neuron's position; for a Conv the gradient is a correlation of patches, im2col). The first
``FIT_SHARE`` of the search samples fit, the rest are held back. The start is the better, on the
held-back samples, of the current weights and their least-squares refit to the ANN's current
(``x_bar W + b ~ z``, ridge towards W, as :mod:`.refit` but at the search neurons); Adam then takes
``ITERATIONS`` full-batch steps, and the weights with the lowest held-back loss among the start and
the iterates are returned -- none when they do not beat the current weights there.
Deterministic: no random numbers. Memory: the patches of the search samples at the search
positions, all steps, sized against the budget (fewer samples when they do not fit).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..config import Config
from ..data import Dataset
from ..simulation.budget import Budget
from ..simulation.footprint import footprint
from ..snn.params import LayerParams
from ..simulation.runtime import expose, make_session, plan_runs, run_batches
from .refit import RIDGE, conv_patches, replace_weights, weighted_source
from .segments import Segment, block_feeds, blocks
from .spikes import SpikeStore
from .targets import LayerTargets

log = logging.getLogger(__name__)

ITERATIONS = 50
FIT_SHARE = 0.75
LEARNING_RATE = 0.02  # Adam's step, relative to the root mean square of the starting weights
MIN_SAMPLES = 16


@dataclasses.dataclass(frozen=True)
class WeightFit:
    """A fitted layer: the model with its new weights, the search samples held back from the fit,
    the held-back loss before and after, and the relative norm of the change ``||W' - W|| / ||W||``
    (weights and bias together)."""

    model: onnx.ModelProto
    held_back: slice
    held_before: float
    held_after: float
    change: float


def fit_weights(work: onnx.ModelProto, ann: onnx.ModelProto, snn, current: str, target: LayerTargets,  # noqa: PLR0913
                p: LayerParams, available: set[str], calib: Dataset, store: SpikeStore, config: Config, budget: Budget,
                held: int) -> WeightFit | None:
    """``work`` with the weights feeding ``current`` fitted through the IF neurons of parameters
    ``p`` (module docstring; ``ann``: the ANN whose current is the refit's target), or None when
    the layer cannot be fitted (logged) or the fit does not lower the held-back loss."""
    node = weighted_source(work, current)
    why = _unsupported(node, current)
    if why:
        log.info("weight fit skipped for current '%s': %s", current, why)
        return None
    rows = _rows(target, config, budget, held, node)
    if rows < MIN_SAMPLES:
        log.info("weight fit skipped for current '%s': too few samples fit the budget", current)
        return None
    cols = _patches(snn, node, target, available, calib.head(rows), store, config, budget, held)
    layer = _Layer(cols, target, p, config.T, node)
    split = max(1, int(round(FIT_SHARE * rows)))
    held_back = slice(split, rows)
    z = _preactivation(ann, node, target, calib.head(split), config, budget, held + cols.nbytes)
    best, before, after = fit_layer(layer, z, split, rows)
    w0 = layer.start()
    if not after < before:
        log.info("weight fit of current '%s' not kept: held-back loss %.4g, best fit %.4g", current, before, after)
        return None
    w, b = layer.unpack(best)
    change = float(np.linalg.norm(best - w0) / max(np.linalg.norm(w0), 1e-30))
    return WeightFit(replace_weights(work, node, w, b), held_back, before, after, change)


def fit_layer(layer: _Layer, z: np.ndarray, split: int, rows: int) -> tuple[np.ndarray, float, float]:
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


def _unsupported(node: gs.Node | None, current: str) -> str | None:
    if node is None:
        return "no single Conv/Gemm with constant weights feeds it"
    if node.outputs[0].name != current:
        return "an op between its Conv/Gemm and the neurons (the gradient assumes current = W x + b)"
    if node.op == "Conv":
        if int(node.attrs.get("group", 1)) != 1:
            return "a grouped convolution"
        if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
            return "automatic padding"
    elif float(node.attrs.get("alpha", 1.0)) != 1.0 or float(node.attrs.get("beta", 1.0)) != 1.0:
        return "a Gemm with alpha or beta other than 1"
    return None


def _kernel_size(node: gs.Node) -> int:
    w = np.asarray(node.inputs[1].values)
    return int(np.prod(w.shape[1:])) if node.op == "Conv" else (w.shape[0] if int(node.attrs.get("transB", 0)) == 0
                                                                else w.shape[1])


def _rows(target: LayerTargets, config: Config, budget: Budget, held: int, node: gs.Node) -> int:
    """Search samples whose patches (all steps, float32, and one working copy) fit half the budget."""
    positions = target.index.size // target.channels
    per_sample = 2 * config.T * positions * _kernel_size(node) * 4 + 16 * target.index.size * config.T
    room = max(0, budget.free(held)) // 2
    return int(min(target.sample.shape[0], room // max(per_sample, 1)))


def _patches(snn, node: gs.Node, target: LayerTargets, available: set[str], data: Dataset, store: SpikeStore,
             config: Config, budget: Budget, held: int) -> np.ndarray:
    """The op's input patches at the search positions: [steps (T, or 1 for a constant input),
    samples, positions, K]."""
    x_name = node.inputs[0].name
    segment = Segment(snn, x_name, available, config)
    spikes = frozenset(n for n in segment.inputs if n in store)
    fp = footprint(segment.model, [x_name], config.T, spikes, {n: store.shape(n) for n in spikes})
    size = budget.run_size("weight fit", fp, len(data), config.T, config.batch_size, held + store.ram_bytes,
                           chunkable=False)
    positions = target.index[: target.index.size // target.channels]
    parts = []
    for block in blocks(len(data), config.T, size.samples, config.T):
        x = segment.run(block_feeds(data, block, store, segment.inputs))
        steps = config.T if len(x) == config.T * block.samples else 1
        x = x.reshape(steps, block.samples, *x.shape[1:])
        parts.append(np.stack([_at_positions(x[t], node, positions) for t in range(steps)]))
        del x
    return np.concatenate(parts, axis=1)


def _at_positions(x: np.ndarray, node: gs.Node, positions: np.ndarray) -> np.ndarray:
    """[samples, positions, K]: a Gemm's input rows (one position), or a Conv's input patches at
    the flat output ``positions`` (each patch in the weight's layout: C_in, then the kernel)."""
    if node.op != "Conv":
        return x.reshape(len(x), 1, -1).astype(np.float32)
    return conv_patches(x, node, positions).astype(np.float32)


class _Layer:
    """The layer's search neurons as a function of its weights ``[K + 1, C]`` (bias last). Held
    position-major (neuron ``p * C + c``: one GEMM per pass, no transposes), patches as
    ``[samples, steps, P, K]``; ``a``, theta, v0 and bias reordered to match once."""

    def __init__(self, cols: np.ndarray, target: LayerTargets, p: LayerParams, T: int, node: gs.Node):
        self.T, self.node = T, node
        self.cols = np.ascontiguousarray(np.swapaxes(cols, 0, 1), np.float32)  # [S, steps, P, K]
        self.mean = self.cols.mean(axis=1)  # x_bar patches [S, P, K]
        self.C, self.P, self.K = target.channels, cols.shape[2], cols.shape[3]
        order = (np.arange(self.C)[None, :] * self.P + np.arange(self.P)[:, None]).reshape(-1)
        self.a = np.ascontiguousarray(target.sample[:len(self.cols)][:, order], np.float32)
        at = lambda v: np.broadcast_to(np.asarray(v, np.float32), target.shape).reshape(-1)[target.index][order]  # noqa: E731
        self.theta, self.v0 = at(p.threshold), at(p.v0)
        self.bias = at(p.bias) if p.bias is not None else np.zeros_like(self.theta)

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


def _preactivation(ann: onnx.ModelProto, node: gs.Node, target: LayerTargets, data: Dataset, config: Config,
                   budget: Budget, held: int) -> np.ndarray:
    """The ANN's output of ``node`` (the layer's current before the activation) on ``data`` at the
    search neurons: [samples, n], in runs sized by the budget."""
    name = node.outputs[0].name
    model = expose(ann, [name])
    size = plan_runs(budget, "weight fit (ANN)", model, [name], len(data), config, held)
    session = make_session(model, config, spin=False)
    parts = [values[name].reshape(len(values[name]), -1)[:, target.index]
             for _, values in run_batches(session, data, size.samples, [name])]
    return np.concatenate(parts).astype(np.float64)


def _least_squares(mean: np.ndarray, z: np.ndarray, w0: np.ndarray) -> np.ndarray:
    """``[W; b]`` minimising ``sum (x_bar W + b - z)^2 + lam ||[W; b] - w0||^2`` over the samples
    and positions (``mean`` [S, P, K]; ``z`` [S, C * P], the targets' channel-major order): the
    refit of the mean current (:mod:`.refit`) at the search neurons, ``lam`` = RIDGE * trace(X^T X) / d."""
    s, positions, k = mean.shape
    x = np.concatenate([mean.reshape(-1, k), np.ones((s * positions, 1), mean.dtype)], 1).astype(np.float64)
    y = np.swapaxes(z.reshape(s, -1, positions), 1, 2).reshape(s * positions, -1)  # [(s, p), C]
    xtx = x.T @ x
    lam = RIDGE * np.trace(xtx) / len(xtx)
    return np.linalg.solve(xtx + lam * np.eye(len(xtx)), x.T @ y + lam * w0)


def _adam(layer: _Layer, w0: np.ndarray, split: int, rows: int) -> tuple[np.ndarray, float]:
    """Adam from ``w0`` on the first ``split`` rows; of ``w0`` and the iterates, the one with the
    lowest loss on the others, and that loss."""
    fit, held = slice(0, split), slice(split, rows)
    step = LEARNING_RATE * float(np.sqrt(np.mean(w0[:-1] ** 2)) or 1.0)
    m, v, wb = np.zeros_like(w0), np.zeros_like(w0), w0.copy()
    best, best_loss = w0, layer.loss(w0, held)
    for i in range(1, ITERATIONS + 1):
        _, g = layer.gradient(wb, fit)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        wb = wb - step * (m / (1 - 0.9 ** i)) / (np.sqrt(v / (1 - 0.999 ** i)) + 1e-12)
        if i % 5 == 0 or i == ITERATIONS:
            loss = layer.loss(wb, held)
            if loss < best_loss:
                best, best_loss = wb.copy(), loss
    return best, best_loss
