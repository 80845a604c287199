"""Portable NIR: rewrite a NIR graph into the subset that sinabs, snnTorch and Norse import as shipped.

Their importers (sinabs 3.1 ``from_nir``, snnTorch 1.0 ``import_from_nir``, Norse 1.1 ``from_nir``)
share only Input, Output, Conv2d, Affine, IF and Flatten: none reads ``Scale``, sinabs and Norse no
``AvgPool2d``, snnTorch no ``SumPool2d``, snnTorch wants one threshold per IF node, and snnTorch and
Norse pass Flatten's ``start_dim`` to torch unchanged (NIR shapes have no batch axis, so
``start_dim = 0`` would flatten the batch) while sinabs adds one to it. The passes, each exact:

1. **Unit thresholds.** An IF neuron with reset by subtraction is invariant under scaling its input,
   threshold and potential by the same 1/theta_c: ``u/theta = v/theta + I/theta``, it fires when
   ``u/theta >= 1`` and subtracts 1. So each IF node's incoming weights and biases are divided by its
   per-channel threshold theta_c and the threshold becomes 1 (v(0) in the metadata is divided too);
   the spikes, 0/1 in NIR, are unchanged. Preconditions: theta is constant over the
   positions of a channel (onnx2snn's thresholds are per layer or per channel); an incoming edge
   that is not a Conv/Affine feeding only this neuron gets a ``Scale(1/theta)`` of its own.
2. **Scales folded forward.** ``W (s * x) = (W diag s) x``: a Scale before a Conv2d (per input
   channel) or an Affine (per input feature) that reads nothing else is folded into its weights;
   a Scale moves past a Flatten (flattened with it) and past an average pool (per channel, it
   commutes); consecutive Scales multiply.
3. **Materialised.** What remains -- a Scale into an IF node (an identity skip connection) or into
   the output, an average pool -- becomes a Conv2d with diagonal channel weights: ``Scale(s)`` is a
   1x1 convolution with ``W[c, c] = s_c``, ``AvgPool2d(k, stride)`` a k x k convolution with
   ``W[c, c] = 1/k^2`` and the same stride (an Affine with a diagonal matrix for 1-D features).
4. **Flatten** gets negative ``start_dim``/``end_dim`` (``-ndim .. -1``), read the same with and
   without a batch axis.

The result holds only Input, Output, Conv2d, Affine, IF and Flatten nodes, IF thresholds all 1;
anything else (Conv1d: snnTorch and Norse have none) raises :class:`UnsupportedModelError` naming
the node. What the consumers simulate differently from onnx2snn's IF neuron cannot be expressed
in the graph (measured by tools/nir_roundtrip.py, docs/deployment.md):
  * sinabs 3.1 (IF -> IAFSqueeze): reset by subtraction as onnx2snn; several spikes in one step
    when v >= 2 theta, v clipped at -theta, v(0) = 0: the ``nir-portable`` target's neuron;
  * Norse 1.1 (IF -> IAFCell): reset to 0 (NIR's v_reset), fires on v > theta, v(0) = 0: the
    ``nir-reset-zero`` target's neuron;
  * snnTorch 1.0: its IF import cannot run a graph where an IF feeds a layer; the ``neuron="LIF"``
    form runs as Leaky(beta = 1, reset to 0), Norse's neuron.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedModelError

PORTABLE_KINDS = ("Input", "Output", "Conv2d", "Affine", "IF", "LIF", "Flatten")


LIF_TAU = 1e8  # time constant of the LIF form, in snnTorch's time step 1e-4: leak 1e-12 per step
SNNTORCH_DT = 1e-4  # snnTorch's importer takes beta = 1 - dt / tau and requires r = tau / dt


def make_portable(graph, neuron: str = "IF"):
    """A new ``nir.NIRGraph`` equivalent to ``graph`` (see module docstring), type-checked by nir.

    ``neuron="LIF"`` writes each unit-threshold IF as a NIR LIF without leak in float32
    (tau = 1e8, r = tau / 1e-4, v_leak = 0): the only neuron snnTorch 1.0 runs from NIR (its IF
    import returns a tuple that nirtorch 2.6 hands on to the next layer), which it simulates as
    ``Leaky(beta = 1 - 1e-4 / tau = 1.0 in float32, reset to zero)``; sinabs and Norse do not read
    this form (sinabs 3.1 fails on an array ``v_leak``, Norse scales the input by dt / tau)."""
    import nir

    net = _Net(nir, dict(graph.nodes), list(graph.edges))
    for name in [n for n, node in net.nodes.items() if isinstance(node, nir.IF)]:
        net.unit_threshold(name)
    net.push_scales()
    for name in [n for n, node in net.nodes.items() if isinstance(node, (nir.Scale, nir.AvgPool2d))]:
        net.materialise(name)
    for name, node in net.nodes.items():
        if isinstance(node, nir.Flatten):
            net.nodes[name] = _negative_flatten(nir, node)
    if neuron == "LIF":
        net.nodes = {n: _as_lif(nir, v) if isinstance(v, nir.IF) else v for n, v in net.nodes.items()}
    bad = [(n, type(v).__name__, "is not read by every NIR consumer", "use Conv2d/Gemm layers")
           for n, v in net.nodes.items() if type(v).__name__ not in PORTABLE_KINDS]
    if bad:
        raise UnsupportedModelError("this SNN has no portable NIR form:", bad)
    return nir.NIRGraph(nodes=net.nodes, edges=net.edges, metadata=dict(graph.metadata or {}))


class _Net:
    """A NIR graph under rewrite: ``nodes`` by name and ``edges`` (source, target) as lists."""

    def __init__(self, nir, nodes: dict, edges: list):
        self.nir, self.nodes, self.edges = nir, nodes, edges
        self.shapes = {n: _out_shape(nir, v) for n, v in nodes.items()}

    def preds(self, name):
        return [a for a, b in self.edges if b == name]

    def succs(self, name):
        return [b for a, b in self.edges if a == name]

    def _new(self, base: str, node, shape) -> str:
        name, i = f"{base}", 0
        while name in self.nodes:
            i += 1
            name = f"{base}.{i}"
        self.nodes[name], self.shapes[name] = node, tuple(shape)
        return name

    def _insert(self, src: str, dst: str, node, base: str, shape) -> str:
        """Put ``node`` on the edge src -> dst."""
        name = self._new(base, node, shape)
        self.edges[self.edges.index((src, dst))] = (src, name)
        self.edges.append((name, dst))
        return name

    def unit_threshold(self, name: str) -> None:
        """Pass 1 for IF node ``name``."""
        node, shape = self.nodes[name], self.shapes[name]
        theta = _per_channel(np.asarray(node.v_threshold, np.float64), shape, name, "threshold")
        if np.all(theta == 1):
            return
        for src in self.preds(name):
            pred = self.nodes[src]
            if isinstance(pred, (self.nir.Conv2d, self.nir.Affine)) and self.succs(src) == [name]:
                self.nodes[src] = _scale_rows(self.nir, pred, 1 / theta)
            else:
                self._insert(src, name, self.nir.Scale(scale=_spread(1 / theta, shape)), f"{name}.in_scale", shape)
        meta = dict(node.metadata or {})
        if "v0" in meta:
            meta["v0"] = (np.asarray(meta["v0"], np.float64) / _spread(theta, shape)).astype(np.float32)
        ones = np.ones(shape, np.float32)
        self.nodes[name] = self.nir.IF(r=np.asarray(node.r, np.float32), v_threshold=ones,
                                       v_reset=np.asarray(node.v_reset, np.float32), metadata=meta)

    def push_scales(self) -> None:
        """Pass 2: fold every Scale forward as far as it goes."""
        changed = True
        while changed:
            changed = False
            for name in [n for n, v in self.nodes.items() if isinstance(v, self.nir.Scale)]:
                changed |= self._push(name)

    def _push(self, name: str) -> bool:
        s = np.asarray(self.nodes[name].scale, np.float64)
        srcs = self.preds(name)  # NIR sums them; the scale applies to the sum
        moved = False
        for dst in self.succs(name):
            if self.preds(dst) != [name]:
                continue
            node, folded = self.nodes[dst], None
            if isinstance(node, self.nir.Scale):
                folded = self.nir.Scale(scale=(s * node.scale).astype(np.float32))
            elif isinstance(node, self.nir.Conv2d):
                folded = _scale_columns_conv(self.nir, node, _per_channel(s, s.shape, name, "scale"))
            elif isinstance(node, self.nir.Affine):
                folded = _scale_columns_affine(self.nir, node, s.reshape(-1))
            elif isinstance(node, (self.nir.Flatten, self.nir.AvgPool2d)):
                after = (s.reshape(-1) if isinstance(node, self.nir.Flatten)
                         else _spread(_per_channel(s, s.shape, name, "scale"), self.shapes[dst]))
                for nxt in self.succs(dst):
                    self._insert(dst, nxt, self.nir.Scale(scale=after.astype(np.float32)), f"{name}.moved",
                                 self.shapes[dst])
                folded = node
            if folded is not None:
                self.nodes[dst] = folded
                self.edges.remove((name, dst))
                self.edges.extend((src, dst) for src in srcs)
                moved = True
        if not self.succs(name):
            self._drop(name)
        return moved

    def _drop(self, name: str) -> None:
        self.edges = [(a, b) for a, b in self.edges if name not in (a, b)]
        del self.nodes[name], self.shapes[name]

    def materialise(self, name: str) -> None:
        """Pass 3: a remaining Scale or average pool as a diagonal Conv2d (or Affine)."""
        node, nir = self.nodes[name], self.nir
        in_shape = self.shapes[self.preds(name)[0]]
        if isinstance(node, nir.Scale):
            s = np.asarray(node.scale, np.float64)
            if len(in_shape) == 1:
                self.nodes[name] = nir.Affine(weight=np.diag(s).astype(np.float32), bias=np.zeros(s.size, np.float32))
                return
            c = _per_channel(s, in_shape, name, "scale")
            kernel, stride = (1, 1), (1, 1)
            weight = np.zeros((c.size, c.size, 1, 1))
            weight[np.arange(c.size), np.arange(c.size)] = c.reshape(-1, 1, 1)
        else:
            kernel = tuple(int(k) for k in np.broadcast_to(node.kernel_size, (2,)))
            stride = tuple(int(k) for k in np.broadcast_to(node.stride, (2,)))
            channels = in_shape[0]
            weight = np.zeros((channels, channels) + kernel)
            weight[np.arange(channels), np.arange(channels)] = 1.0 / (kernel[0] * kernel[1])
        if len(in_shape) != 3:
            raise UnsupportedModelError("this SNN has no portable NIR form:",
                                        [(name, type(node).__name__, "acts on a tensor that is not [C, H, W]",
                                          "use 2-D convolutions")])
        self.nodes[name] = nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=weight.astype(np.float32),
                                      stride=stride, padding=(0, 0), dilation=(1, 1), groups=1,
                                      bias=np.zeros(weight.shape[0], np.float32))


def _out_shape(nir, node) -> tuple[int, ...]:
    if isinstance(node, nir.IF):
        return tuple(np.shape(node.v_threshold))
    if isinstance(node, nir.Scale):
        return tuple(np.shape(node.scale))
    types = getattr(node, "output_type", None) or {}
    shape = next(iter(types.values()), None)
    return tuple(int(v) for v in shape) if shape is not None else ()


def _per_channel(values: np.ndarray, shape, name: str, what: str) -> np.ndarray:
    """``values`` (broadcastable to ``shape``) as one number per channel (axis 0), or refuse."""
    full = np.broadcast_to(values, shape) if shape else np.asarray(values).reshape(-1)
    rows = full.reshape(full.shape[0], -1) if full.ndim else full.reshape(1, 1)
    if not np.all(rows == rows[:, :1]):
        raise UnsupportedModelError("this SNN has no portable NIR form:",
                                    [(name, "IF" if what == "threshold" else "Scale",
                                      f"its {what} varies within a channel", "use per-channel thresholds")])
    return rows[:, 0]


def _spread(per_channel: np.ndarray, shape) -> np.ndarray:
    """One value per channel, broadcast to the full shape (axis 0 is the channel)."""
    c = np.asarray(per_channel, np.float64)
    return np.broadcast_to(c.reshape((-1,) + (1,) * (len(shape) - 1)), shape).astype(np.float32)


def _scale_rows(nir, node, factor: np.ndarray):
    """Conv2d/Affine with output channel o's weights and bias multiplied by ``factor[o]``."""
    f = factor.reshape((-1,) + (1,) * (np.ndim(node.weight) - 1))
    weight = (np.asarray(node.weight, np.float64) * f).astype(np.float32)
    bias = (np.asarray(node.bias, np.float64) * factor).astype(np.float32)
    if isinstance(node, nir.Affine):
        return nir.Affine(weight=weight, bias=bias)
    return _conv_like(nir, node, weight, bias)


def _scale_columns_conv(nir, node, per_channel: np.ndarray):
    w = np.asarray(node.weight, np.float64) * per_channel.reshape(1, -1, 1, 1)
    return _conv_like(nir, node, w.astype(np.float32), np.asarray(node.bias, np.float32))


def _scale_columns_affine(nir, node, per_feature: np.ndarray):
    w = np.asarray(node.weight, np.float64) * per_feature.reshape(1, -1)
    return nir.Affine(weight=w.astype(np.float32), bias=np.asarray(node.bias, np.float32))


def _conv_like(nir, node, weight, bias):
    return nir.Conv2d(input_shape=node.input_shape, weight=weight, stride=node.stride, padding=node.padding,
                      dilation=node.dilation, groups=node.groups, bias=bias)


def _negative_flatten(nir, node):
    shape = node.input_type["input"]
    ndim = len(shape)
    start = node.start_dim - ndim if node.start_dim >= 0 else node.start_dim
    end = node.end_dim - ndim if node.end_dim >= 0 else node.end_dim
    return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=int(start), end_dim=int(end))


def _as_lif(nir, node):
    """A unit-threshold IF as a leak-free NIR LIF in snnTorch's time step (see :func:`make_portable`)."""
    shape = np.shape(node.v_threshold)
    full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
    return nir.LIF(tau=full(LIF_TAU), r=full(LIF_TAU / SNNTORCH_DT), v_leak=full(0.0), v_threshold=full(1.0),
                   v_reset=full(0.0), metadata=dict(node.metadata or {}))
