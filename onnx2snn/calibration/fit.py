"""Phase 2, step b (``--fit-weights``): fit a layer's weights through its spiking neurons.

For a spiking layer whose current is the output of one Conv (groups 1, 1-D or 2-D) or Gemm,
``c_t = W x_t + b`` (``x_t``: that op's input at step t in the SNN whose earlier layers are already
calibrated), the layer's rate ``r = theta / T * count_T(IF(c; theta, v0, bias))`` is fitted to the
ANN activation ``a``, ``min_{W, b} sum (r - a)^2``, through the true IF simulation with a
straight-through gradient (the maths and the optimiser: :mod:`.surrogate`). This module gathers
what that needs and applies the result:

- the **fit set**, a set of its own, larger than phase 2's search set: the phase-2 samples, as many
  as ``FIT_BYTES`` of input patches hold, at up to ``FIT_NEURONS`` neurons (every channel, the same
  random positions in each; the search set's 256 samples x 2,048 neurons over-fit,
  docs/accuracy.md). The first ``FIT_SHARE`` of its samples fit, the rest are held back;
- the **inputs**: the op's input patches (im2col) at those positions, all steps, from the stored
  spike trains of earlier layers; the **targets**: the ANN's activation and current there;
- the new weights in a copy of the model, kept only when they lower the held-back loss, with the
  held-back samples to judge the layer once it is calibrated again.

Deterministic: the neurons are drawn with a fixed seed, the samples are as many as ``FIT_BYTES``
holds, whatever the budget (fewer, logged, only when half the budget's free room is smaller).
"""

from __future__ import annotations

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
from .refit import conv_patches, replace_weights, weighted_source
from .segments import Segment, block_feeds, blocks
from .spikes import SpikeStore
from .surrogate import SpikingLayer, fit_layer
from .targets import LayerTargets, search_neurons

log = logging.getLogger(__name__)

FIT_SHARE = 0.75
FIT_NEURONS = 8192
FIT_BYTES = 1 << 30  # the fit set's patches, whatever the budget (_rows)
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
    held_back: SpikingLayer  # the layer on the held-back samples, to judge the layer calibrated again
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
    fitted = SpikingLayer(cols, target, p, config.T, node)
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
        return x.reshape(len(x), 1, -1).astype(np.float32, copy=False)
    return conv_patches(x, node, positions).astype(np.float32, copy=False)


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
