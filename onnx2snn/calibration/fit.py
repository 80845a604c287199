"""Phase 2, step b (``--fit-weights``): fit a layer's weights through its spiking neurons.

For a spiking layer whose current is the output of one Conv (groups 1, 1-D or 2-D) or Gemm,
``c_t = W x_t + b`` (``x_t``: that op's input at step t in the SNN whose earlier layers are already
calibrated), the layer's rate ``r = theta / T * count_T(IF(c; theta, v0, bias))`` is fitted to the
ANN activation ``a`` on the fit's samples and neurons (below):

    min_{W, b}  L = sum (r - a)^2

The forward pass is the true IF simulation (reset by subtraction, at most one spike per step), so
L is the SNN's own error. The backward pass replaces the spike count by its piecewise-linear
envelope ``clip((sum_t c_t + v0 + T bias) / theta, 0, T)`` (a straight-through estimate), whose
derivative is ``1 / theta`` inside ``(0, T theta)`` and 0 outside; with ``sum_t c_t = T (W x_bar + b)``:

    dL/dW_o = sum_n 2 (r_n - a_n) m_n x_bar_n ,   dL/db_o = sum_n 2 (r_n - a_n) m_n ,
    m_n = 1[0 < sum_t c_t + v0 + T bias < T theta]

over the neurons n of output channel o (``x_bar``: the mean over T of the input patch at the
neuron's position; for a Conv the gradient is a correlation of patches, im2col). The fit has a set
of its own, larger than phase 2's search set: the phase-2 samples (as many as ``FIT_BYTES`` of
patches hold) at up to ``FIT_NEURONS`` neurons (every channel, the same random positions in each); the search
set's 256 samples x 2,048 neurons over-fit (docs/accuracy.md). The first ``FIT_SHARE`` of its
samples fit, the rest are held back. The start is the better, on the held-back samples, of the
current weights and their least-squares refit to the ANN's current
(``x_bar W + b ~ z``, ridge towards W, as :mod:`.refit` but at the fit's neurons); Adam then takes
``ITERATIONS`` full-batch steps, and the weights with the lowest held-back loss among the start and
the iterates are returned -- none when they do not beat the current weights there.
Deterministic: the neurons are drawn with a fixed seed, the samples are as many as ``FIT_BYTES``
holds, whatever the budget (fewer, logged, only when half the budget's free room is smaller).
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..config import Config
from ..data import Dataset
from ..graph.plan import Layer
from ..simulation.budget import Budget
from ..simulation.footprint import footprint
from ..snn.params import LayerParams
from ..simulation.runtime import expose, make_session, plan_runs, run_batches
from .refit import RIDGE, conv_patches, replace_weights, weighted_source
from .segments import Segment, block_feeds, blocks
from .spikes import SpikeStore
from .targets import LayerTargets, search_neurons

log = logging.getLogger(__name__)

ITERATIONS = 50
FIT_SHARE = 0.75
FIT_NEURONS = 8192
FIT_BYTES = 1 << 30  # the fit set's patches, whatever the budget (_rows)
LEARNING_RATE = 0.02  # Adam's step, relative to the root mean square of the starting weights
MIN_SAMPLES = 16


@dataclasses.dataclass(frozen=True)
class WeightFit:
    """A fitted layer: the model with its new weights, the search samples held back from the fit,
    the held-back loss before and after, and the relative norm of the change ``||W' - W|| / ||W||``
    (weights and bias together)."""

    model: onnx.ModelProto
    held_before: float
    held_after: float
    change: float
    held_back: _Layer  # the layer on the held-back samples, to judge the layer calibrated again
    weights: np.ndarray  # the fitted [W; b]

    def held_back_error(self, p: LayerParams) -> float:
        """sum (r - a)^2 on the held-back samples with the fitted weights and parameters ``p``."""
        return self.held_back.with_params(p).loss(self.weights, slice(None))


def fit_weights(work: onnx.ModelProto, ann: onnx.ModelProto, snn, layer: Layer, shape: tuple[int, ...],  # noqa: PLR0913
                p: LayerParams, available: set[str], calib: Dataset, store: SpikeStore, config: Config, budget: Budget,
                held: int) -> WeightFit | None:
    """``work`` with the weights feeding ``layer`` (activation ``shape`` per sample) fitted through
    its IF neurons of parameters ``p`` (module docstring; ``ann``: the ANN whose activation and
    current are the targets), or None when the layer cannot be fitted (logged) or the fit does not
    lower the held-back loss."""
    current = layer.current
    node = weighted_source(work, current)
    why = _unsupported(node, current)
    if why:
        log.info("weight fit skipped for current '%s': %s", current, why)
        return None
    index = search_neurons(shape, FIT_NEURONS)
    rows = _rows(len(calib), index.size, shape, config, budget, held, node)
    if rows < MIN_SAMPLES:
        log.info("weight fit skipped for current '%s': too few samples fit the budget", current)
        return None
    target, z = _ann_values(ann, layer, node, shape, index, calib.head(rows), config, budget, held)
    cols = _patches(snn, node, target, available, calib.head(rows), store, config, budget, held + z.nbytes)
    fitted = _Layer(cols, target, p, config.T, node)
    del cols
    split = max(1, int(round(FIT_SHARE * rows)))
    best, before, after = fit_layer(fitted, z[:split], split, rows)
    w0 = fitted.start()
    if not after < before:
        log.info("weight fit of current '%s' not kept: held-back loss %.4g, best fit %.4g", current, before, after)
        return None
    w, b = fitted.unpack(best)
    change = float(np.linalg.norm(best - w0) / max(np.linalg.norm(w0), 1e-30))
    return WeightFit(replace_weights(work, node, w, b), before, after, change, fitted.rows(slice(split, rows)), best)


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


def _rows(samples: int, neurons: int, shape: tuple[int, ...], config: Config, budget: Budget, held: int,
          node: gs.Node) -> int:
    """Samples (of ``samples``) whose patches (all steps and their mean, float32) and the IF
    simulation's arrays at ``neurons`` neurons take at most ``FIT_BYTES``: a number that does not depend on the
    budget, so neither does the fit, unless half the budget's free room cannot hold them (then
    fewer, logged)."""
    positions = neurons // (shape[0] if shape else 1)
    per_sample = max(1, (config.T + 1) * positions * _kernel_size(node) * 4 + 16 * neurons * config.T)
    rows = min(samples, FIT_BYTES // per_sample)
    room = max(0, budget.free(held)) // 2 // per_sample
    if room < rows:
        log.info("weight fit set cut from %d to %d samples by the memory limit (raise --memory-limit to fit "
                 "on all of them)", rows, room)
    return int(min(rows, room))


def _patches(snn, node: gs.Node, target: LayerTargets, available: set[str], data: Dataset, store: SpikeStore,
             config: Config, budget: Budget, held: int) -> np.ndarray:
    """The op's input patches at the fit's positions: [samples, steps (T, or 1 for a constant
    input), positions, K], filled block by block (no second copy)."""
    x_name = node.inputs[0].name
    segment = Segment(snn, x_name, available, config)
    spikes = frozenset(n for n in segment.inputs if n in store)
    fp = footprint(segment.model, [x_name], config.T, spikes, {n: store.shape(n) for n in spikes})
    size = budget.run_size("weight fit", fp, len(data), config.T, config.batch_size, held + store.ram_bytes,
                           chunkable=False)
    positions = target.index[: target.index.size // target.channels]
    out = None
    for block in blocks(len(data), config.T, size.samples, config.T):
        x = segment.run(block_feeds(data, block, store, segment.inputs))
        steps = config.T if len(x) == config.T * block.samples else 1
        x = x.reshape(steps, block.samples, *x.shape[1:])
        for t in range(steps):
            cols = _at_positions(x[t], node, positions)
            if out is None:
                out = np.empty((len(data), steps, *cols.shape[1:]), np.float32)
            out[block.start:block.stop, t] = cols
        del x, cols
    return out


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

    def with_params(self, p: LayerParams) -> _Layer:
        """The same neurons and inputs with the IF parameters ``p``."""
        other = copy.copy(self)
        other._set(p)
        return other

    def rows(self, rows: slice) -> _Layer:
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


def _ann_values(ann: onnx.ModelProto, layer: Layer, node: gs.Node, shape: tuple[int, ...], index: np.ndarray,
                data: Dataset, config: Config, budget: Budget, held: int) -> tuple[LayerTargets, np.ndarray]:
    """The ANN's activation ``a`` of ``layer`` (as the fit's targets) and the output of ``node``
    (its current before the activation, ``z``) on ``data`` at the neurons ``index``, in runs
    sized by the budget."""
    names = [layer.output, node.outputs[0].name]
    model = expose(ann, names)
    size = plan_runs(budget, "weight fit (ANN)", model, names, len(data), config, held)
    session = make_session(model, config, spin=False)
    parts = [[values[n].reshape(len(values[n]), -1)[:, index] for n in names]
             for _, values in run_batches(session, data, size.samples, names)]
    a, z = (np.concatenate([part[k] for part in parts]) for k in range(2))
    positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    target = LayerTargets(layer.name, shape, np.empty(0), index, index // positions, a.astype(np.float32))
    return target, z.astype(np.float64)


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
