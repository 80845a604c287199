"""Optional phase-2 step (off by default, ``--refit-weights``): least-squares refit of a layer's weights.

For a spiking layer whose current comes from one weighted op ``y = W x + b`` (Conv or Gemm; ops
such as BatchNormalization after it stay as they are), with x_bar the SNN's input to that op
averaged over T (earlier layers already calibrated) and y the ANN's value of the same tensor:

    [W' b'] = argmin  sum ||W' x_bar + b' - y||^2 + lam * ||[W' b'] - [W b]||^2,
    lam = RIDGE * trace(X^T X) / d

solved per output channel (and group) from normal equations streamed over the calibration data.
Because the op is affine, ``mean_t(W s_t + b) = W x_bar + b``: the fit makes the layer's mean current
reproduce the ANN's on the SNN's own inputs. It changes the user's weights, so it is reported.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from ..config import Config
from ..data import Dataset
from ..graph import weights
from ..ops import lookup
from ..simulation.budget import Budget
from ..simulation.footprint import footprint
from ..simulation.runtime import expose, make_session
from .segments import Segment, block_feeds, blocks
from .spikes import SpikeStore

log = logging.getLogger(__name__)

RIDGE = 1e-3


def refit_layer(work: onnx.ModelProto, ann: onnx.ModelProto, snn: onnx.ModelProto, current: str,
                time_major: frozenset, available: set[str], calib: Dataset, store: SpikeStore,
                config: Config, budget: Budget, held: int) -> onnx.ModelProto | None:
    """``work`` with the weights feeding ``current`` refitted, or None when the layer has no
    refittable Conv/Gemm or its input does not spike (see module docstring). The SNN's input to the
    op is read from the stored spikes in runs of all T steps sized by ``budget``; the normal
    equations add one sample after the other, so they do not depend on the runs."""
    node = weighted_source(work, current)
    if node is None or node.inputs[0].name not in time_major:
        log.info("weight refit skipped for current '%s': %s", current,
                 "no single Conv/Gemm with constant weights feeds it" if node is None else "its input does not spike")
        return None
    x_name, y_name = node.inputs[0].name, node.outputs[0].name
    segment = Segment(snn, x_name, available, config)
    target = expose(ann, [y_name])
    spikes = frozenset(n for n in segment.inputs if n in store)
    fp = footprint(segment.model, [x_name], config.T, spikes, {n: store.shape(n) for n in spikes})
    size = budget.run_size("weight refit", fp.plus(static=footprint(target, [y_name]).peak(1)), len(calib),
                           config.T, config.batch_size, held + store.ram_bytes + weights.weight_bytes(ann),
                           chunkable=False)
    session = make_session(target, config)
    equations = NormalEquations(node)
    for block in blocks(len(calib), config.T, size.samples, config.T):
        feeds = block_feeds(calib, block, store, segment.inputs)
        x = segment.run(feeds)
        x = x.reshape(config.T, -1, *x.shape[1:]).mean(axis=0)
        y = session.run([y_name], {k: v[block.start:block.stop] for k, v in calib.inputs.items()})[0]
        for i in range(block.samples):
            equations.add(x[i:i + 1], y[i:i + 1])
    return replace_weights(work, node, *equations.solve())


def weighted_source(ann: onnx.ModelProto, current: str) -> gs.Node | None:
    """The Conv/Gemm producing ``current`` through single-input affine ops, or None."""
    graph = weights.import_graph(ann)
    tensor = graph.tensors()[current]
    while tensor.inputs:
        node = tensor.inputs[0]
        if node.op in NormalEquations.OPS:
            ok = all(isinstance(t, gs.Constant) for t in node.inputs[1:]) and int(node.attrs.get("transA", 0)) == 0
            return node if ok and _single_use(graph, node.inputs[1].name) else None
        variables = [t for t in node.inputs if not isinstance(t, gs.Constant)]
        spec = lookup(node)
        if spec is None or not spec.elementwise or len(variables) != 1:
            return None
        tensor = variables[0]
    return None


def _single_use(graph: gs.Graph, name: str) -> bool:
    return sum(t.name == name for n in graph.nodes for t in n.inputs) == 1


class NormalEquations:
    """Streamed X^T X and X^T Y for ``y = W x + b`` of one Conv/Gemm node (per group)."""

    OPS = ("Conv", "Gemm")  # the weighted ops whose design rows :meth:`rows` builds

    def __init__(self, node: gs.Node):
        self.node, self.op = node, node.op
        self.groups = int(node.attrs.get("group", 1)) if self.op == "Conv" else 1
        self.xtx, self.xty = None, None

    def rows(self, x: np.ndarray, y: np.ndarray):
        """Design rows [groups, n, d+1] (with a ones column) and targets [groups, n, c]."""
        if self.op == "Gemm":
            return np.concatenate([x, np.ones((len(x), 1), x.dtype)], 1)[None], y[None]
        cols = conv_patches(x, self.node)  # [n*H*W, Cin*k*k] grouped below
        n_out = y.shape[1]
        y = np.moveaxis(y, 1, -1).reshape(-1, n_out)
        cin_g, cout_g = x.shape[1] // self.groups, n_out // self.groups
        k = cols.shape[1] // x.shape[1]
        xs = [cols[:, g * cin_g * k:(g + 1) * cin_g * k] for g in range(self.groups)]
        ys = [y[:, g * cout_g:(g + 1) * cout_g] for g in range(self.groups)]
        ones = np.ones((len(cols), 1), cols.dtype)
        return np.stack([np.concatenate([a, ones], 1) for a in xs]), np.stack(ys)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        xs, ys = self.rows(x.astype(np.float64), y.astype(np.float64))
        xtx, xty = np.einsum("gni,gnj->gij", xs, xs), np.einsum("gni,gnj->gij", xs, ys)
        self.xtx, self.xty = (xtx, xty) if self.xtx is None else (self.xtx + xtx, self.xty + xty)

    def solve(self) -> tuple[np.ndarray, np.ndarray]:
        """New (W, b) in the node's own layout and dtype."""
        w = np.asarray(self.node.inputs[1].values)
        b = np.asarray(self.node.inputs[2].values) if len(self.node.inputs) > 2 else None
        old = self._stacked(w, b)  # [g, d+1, c]
        d = self.xtx.shape[1]
        lam = RIDGE * np.trace(self.xtx, axis1=1, axis2=2)[:, None, None] / d
        new = np.linalg.solve(self.xtx + lam * np.eye(d), self.xty + lam * old)
        return self._unstacked(new, w, b)

    def _stacked(self, w, b):
        if self.op == "Gemm":
            wt = w if int(self.node.attrs.get("transB", 0)) else w.T
            wt = wt * float(self.node.attrs.get("alpha", 1.0))
            bias = np.zeros(wt.shape[0]) if b is None else np.broadcast_to(
                b * float(self.node.attrs.get("beta", 1.0)), (wt.shape[0],))
            return np.concatenate([wt.T, bias[None]], 0)[None]
        cout = w.shape[0]
        bias = np.zeros(cout) if b is None else b
        per_group = cout // self.groups
        return np.stack([np.concatenate([w[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T,
                                         bias[None, g * per_group:(g + 1) * per_group]], 0)
                         for g in range(self.groups)])

    def _unstacked(self, new, w, b):
        if self.op == "Gemm":
            wt, bias = new[0, :-1].T, new[0, -1]
            alpha, beta = float(self.node.attrs.get("alpha", 1.0)), float(self.node.attrs.get("beta", 1.0))
            wt = wt / alpha
            w_new = wt if int(self.node.attrs.get("transB", 0)) else wt.T
            b_new = bias / beta if beta else bias
        else:
            w_new = np.concatenate([g[:-1].T for g in new]).reshape(w.shape)
            b_new = np.concatenate([g[-1] for g in new])
        return w_new.astype(w.dtype), b_new.astype(w.dtype)


def conv_patches(x: np.ndarray, node: gs.Node, positions: np.ndarray | None = None) -> np.ndarray:
    """Patches of a 1-D/2-D convolution input in the weight's layout (C_in, then the kernel):
    [N * out positions, Cin * prod(kernel)], or at the flat output ``positions`` only:
    [N, len(positions), Cin * prod(kernel)] (only those are copied)."""
    w = np.asarray(node.inputs[1].values)
    kernel = w.shape[2:]
    dims = len(kernel)
    strides = node.attrs.get("strides", [1] * dims)
    dil = node.attrs.get("dilations", [1] * dims)
    pads = node.attrs.get("pads", [0] * 2 * dims)
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        raise ValueError("auto_pad is not supported by the weight refit")
    x = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + dims]) for i in range(dims)])
    if positions is not None:
        flat = x.reshape(len(x), -1)
        return np.take(flat, _patch_index(x.shape[1:], kernel, strides, dil, positions), axis=1)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(2, 2 + dims)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
    win = win[(Ellipsis,) + tuple(slice(None, None, d) for d in dil)]  # [N, C, *out, *kernel]
    order = (0, *range(2, 2 + dims), 1, *range(2 + dims, 2 + 2 * dims))
    return win.transpose(order).reshape(-1, int(np.prod(win.shape[1:2]) * np.prod(kernel)))  # [N * out, C * kernel]


def _patch_index(padded: tuple[int, ...], kernel, strides, dil, positions: np.ndarray) -> np.ndarray:
    """[len(positions), C * prod(kernel)]: the flat index into one padded input sample ``[C,
    *spatial]`` of each patch element: output position o, kernel offset k, spatial axis d read
    ``o_d * stride_d + k_d * dilation_d``."""
    channels, spatial = padded[0], padded[1:]
    out = [(n - ((k - 1) * d + 1)) // s + 1 for n, k, d, s in zip(spatial, kernel, dil, strides)]
    where = np.unravel_index(positions, out)
    offsets = np.indices(kernel).reshape(len(kernel), -1)  # [dims, prod(kernel)]
    index = np.zeros((len(positions), 1, offsets.shape[1]), np.int64)
    for d in range(len(kernel)):
        coord = where[d][:, None] * strides[d] + offsets[d][None] * dil[d]  # [P, prod(kernel)]
        index = index * spatial[d] + coord[:, None, :]
    plane = int(np.prod(spatial))
    index = index + (np.arange(channels) * plane)[None, :, None]
    return index.reshape(len(positions), -1)


def replace_weights(ann: onnx.ModelProto, node: gs.Node, w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """A copy of ``ann`` with the node's weight (and bias, added if missing) initializers replaced."""
    out = weights.copy_model(ann)
    names = {t.name: i for i, t in enumerate(out.graph.initializer)}
    w_name = node.inputs[1].name
    out.graph.initializer[names[w_name]].CopyFrom(numpy_helper.from_array(w, w_name))
    target = next(n for n in out.graph.node if n.name == node.name)
    if len(target.input) > 2 and target.input[2]:
        out.graph.initializer[names[target.input[2]]].CopyFrom(numpy_helper.from_array(b, target.input[2]))
    else:
        b_name = f"{node.name}/refit_bias"
        out.graph.initializer.append(numpy_helper.from_array(b, b_name))
        del target.input[2:]
        target.input.append(b_name)
    return out
