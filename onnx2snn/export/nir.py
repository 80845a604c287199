"""NIR export: the converted SNN in the Neuromorphic Intermediate Representation (``nir`` package).

NIR graphs are evaluated per time step: every node maps its input at step t to its output at step t,
a node's input is the sum of all edges into it, and only neuron nodes keep state. The input image is
presented at every step (direct encoding) and the output node's values are averaged over T steps
by the consumer, exactly as onnx2snn's readout does.

Mapping (ONNX op in the converted model -> NIR):
  Conv (2D / 1D)                    -> Conv2d / Conv1d (weight, bias, stride, padding, dilation, groups)
  Gemm, MatMul (+ Add of a const)   -> Affine (weight [out, in], bias)
  Mul / Div by a constant           -> Scale
  AveragePool, GlobalAveragePool    -> AvgPool2d (no padding)
  Flatten, Reshape to [N, -1]       -> Flatten (start_dim 0: NIR shapes have no batch axis)
  Add of two spike paths (residual) -> both edges into the consumer (NIR sums inputs)
  phase-2 bias current (Add)        -> added to the bias of the Conv/Affine that feeds the neurons
                                       (an identity Conv2d 1x1 / Affine where none feeds only them)
  IFNeuron                          -> IF (r = 1, v_threshold = theta per neuron, v_reset = 0)
                                       followed by Scale(theta): our spikes carry theta, NIR's are 0/1
  Tile, the readout's mean over T   -> nothing (a constant input is the same at every step; the
                                       consumer averages the output over T)
Which ONNX ops map, and to which NIR node, is the registry's ``OpSpec.nir``; the rewrite's own
nodes (IF neurons, readouts, repeats, spiking max-pools) are known from its record (the model's
``onnx2snn.record`` metadata, :class:`onnx2snn.snn.rewrite.Record`), never from their names.

What NIR's IF cannot express, and is therefore written to each IF node's ``metadata``:
  * reset by **subtraction** (``v -= theta`` on a spike); NIR's IF resets to ``v_reset``
    (``metadata["reset"] = "subtract"``);
  * the initial membrane potential v(0) per neuron (``metadata["v0"]``, shape of the layer);
    NIR has no initial state, and without it a consumer starts at 0 and loses the phase-1 theta/2;
  * the firing condition ``v >= theta`` (NIR writes ``v > theta``; equality has probability ~0
    for real-valued inputs) -- ``metadata["fire"] = ">="``;
  * at most one spike per step (``metadata["spikes_per_step"] = 1``).
A consumer that honours these four entries reproduces onnx2snn's spike counts exactly (up to float
summation order); one that does not, simulates a different neuron (see tools/nir_roundtrip.py).
``portable=True`` rewrites the graph into what sinabs, snnTorch and Norse import as shipped
(:mod:`.portable`, which also says what each of them simulates differently); convert with
``--target nir-portable`` (or ``nir-reset-zero``) so that v(0) is 0, which none of them has.
Not expressible at all (refused with the node names): spiking MaxPool (NIR has no max pooling),
Concat, padded average pooling, grouped/depthwise convolution (nir 1.0.8 infers a grouped conv's
input width as ``weight.shape[1]`` and rejects the graph on reading), any other op between
spiking layers.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ConfigError, UnsupportedModelError
from ..graph import load, weights
from ..graph.plan import make_plan
from ..ops import Role, if_neuron, lookup_proto
from ..snn.params import unit_params
from ..snn.rewrite import Record, to_snn
from .files import atomic_write
from .portable import make_portable


def import_nir():
    """The optional 'nir' package, or a ConfigError saying how to install it."""
    try:
        import nir
    except ImportError:
        raise ConfigError("NIR export needs the 'nir' package: pip install 'onnx2snn[nir]'") from None
    return nir


def check_exportable(ann: onnx.ModelProto, boundary_ops: tuple[str, ...] = (), portable: bool = False) -> None:
    """Refuse before any work a model whose SNN NIR cannot express (UnsupportedModelError listing
    every node): its SNN is built with unit thresholds for one step and mapped (``portable``: and
    made portable), nothing written."""
    model = load.normalize(ann)
    plan = make_plan(model, boundary_ops)
    to_nir(to_snn(model, plan, unit_params(plan), 1), portable)


def to_nir(snn: onnx.ModelProto, portable: bool = False, neuron: str = "IF"):
    """The converted model ``snn`` as a ``nir.NIRGraph`` (see module docstring for the mapping);
    ``portable``: rewritten to what sinabs, snnTorch and Norse import, with ``neuron`` "IF" or
    "LIF" (:func:`.portable.make_portable`)."""
    graph = _Builder(snn).build()
    return make_portable(graph, neuron) if portable else graph


def save_nir(snn: onnx.ModelProto, path: str | os.PathLike, portable: bool = False, neuron: str = "IF") -> None:
    """Write ``snn`` as a NIR (HDF5) file, atomically (``portable``, ``neuron``: see :func:`to_nir`)."""
    nir = import_nir()
    graph = to_nir(snn, portable, neuron)
    with atomic_write(path, "w+b") as handle:  # h5py reads back what it writes
        nir.write(handle, graph)


class _Builder:
    """Walks the converted graph in order; ``sources[t]`` lists the NIR nodes whose outputs sum to
    ONNX tensor ``t`` (several after a residual Add)."""

    def __init__(self, snn: onnx.ModelProto):
        self.nir = import_nir()
        self.model = load.infer_shapes(snn)
        g = self.model.graph
        self.const = {i.name: weights.to_array(i) for i in g.initializer}
        for node in g.node:
            if node.op_type == "Constant":
                self.const[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.shape = load.sample_shapes(self.model)
        self.nodes, self.edges, self.sources, self.problems, self.dead = {}, [], {}, [], set()
        self.record = Record.read(self.model)
        if self.record is None:
            raise ConfigError("this model carries no onnx2snn record (metadata 'onnx2snn.record'): export NIR "
                              "from a model converted by this version of onnx2snn")
        self.readout_nodes = set(self.record.readout_nodes)
        self.block = {node: pool for pool, nodes in self.record.pools.items() for node in nodes}
        self.neurons = set(self.record.neurons.values())
        self.refused_pools: set[str] = set()
        uses: dict[str, int] = {}
        for n in g.node:
            for i in n.input:
                uses[i] = uses.get(i, 0) + 1
        self.uses, self.fanout = uses, {}

    def build(self):
        nir, g = self.nir, self.model.graph
        inp = next(i for i in g.input if i.name not in self.const)
        self._add("input", nir.Input(input_type={"input": np.array(self.shape[inp.name])}), [])
        self.sources[inp.name] = ["input"]
        for node in g.node:
            self._visit(node)
        if self.problems:
            raise UnsupportedModelError("this SNN cannot be written as NIR (convert without --nir, or "
                                        "change these layers):", self.problems)
        out = g.output[0].name
        self._add("output", nir.Output(output_type={"output": np.array(self.shape[out])}), self.sources[out])
        key = {name: name.strip("/").replace("/", ".") or name for name in self.nodes}  # HDF5: '/' nests
        if len(set(key.values())) < len(key):
            key = {name: f"{i}:{k}" for i, (name, k) in enumerate(key.items())}
        return nir.NIRGraph(nodes={key[n]: v for n, v in self.nodes.items()},
                            edges=[(key[a], key[b]) for a, b in self.edges],
                            metadata={"onnx2snn.readout": "mean over T"})

    def _visit(self, node) -> None:
        """Map one node, telling the rewrite's nodes (from its record) from the user's ops (by the
        registry's ``nir`` kind)."""
        spec = lookup_proto(node)
        block = self.block.get(node.name, node.name if spec and spec.role is Role.MAXPOOL else None)
        if block is not None:  # a spiking max-pool block, or a max pool in the readout
            if block not in self.refused_pools:
                self.refused_pools.add(block)
                self.problems.append((block, "MaxPool", "max pooling has no NIR equivalent",
                                      "use average pooling in the ANN to export NIR"))
            self.dead.update(node.output)
        elif node.op_type == "Constant" or (node.name in self.readout_nodes and node.output[0] not in
                                            self.record.readouts):
            return  # the readout's reshapes and sums: the consumer averages the output over T
        elif any(i in self.dead for i in node.input):  # downstream of a refused node
            self.dead.update(node.output)
        elif node.name in self.readout_nodes or node.output[0] in self.record.repeats:
            self._alias(node, self.record.readouts.get(node.output[0], node.input[0]))
        elif node.name in self.neurons and if_neuron.is_if_neuron(node):
            self._if_neuron(node)
        elif spec is None or spec.nir is None:
            self._refuse(node, "has no NIR equivalent")
        else:
            getattr(self, f"_op_{node.op_type}")(node)

    def _add(self, name: str, node, inputs: list[str]) -> None:
        self.nodes[name] = node
        self.edges.extend((src, name) for src in inputs)

    def _refuse(self, node, why: str) -> None:
        self.problems.append((node.name, node.op_type, why, "NIR 1.0 cannot express it"))
        self.dead.update(node.output)

    def _alias(self, node, source: str | None = None) -> None:
        """``node``'s output is ``source`` (default its first input) at every step: a repeated
        constant current, the readout's rate (the consumer averages), a folded bias."""
        source = source or node.input[0]
        if source in self.dead:
            self.dead.update(node.output)
        else:
            self.sources[node.output[0]] = self.sources[source]

    def _op_Mul(self, node) -> None:
        const = self.const.get(node.input[1])
        if const is None:
            return self._refuse(node, "multiplies two signals")
        shape = self.shape[node.output[0]]
        self._add(node.name, self.nir.Scale(scale=np.broadcast_to(const, shape).astype(np.float32)),
                  self.sources[node.input[0]])
        self.sources[node.output[0]] = [node.name]

    def _op_Div(self, node) -> None:
        const = self.const.get(node.input[1])
        if const is None:
            return self._refuse(node, "divides two signals")
        self.const[f"{node.name}/reciprocal"] = (1 / const).astype(np.float32)
        self._op_Mul(_Renamed(node, [node.input[0], f"{node.name}/reciprocal"]))

    def _op_Add(self, node) -> None:
        a, b = node.input
        if b in self.const:  # a bias: fold into the producer's bias
            return self._fold_bias(node, self.const[b])
        self.sources[node.output[0]] = self.sources[a] + self.sources[b]

    def _fold_bias(self, node, bias: np.ndarray) -> None:
        """A constant current added at every step is a bias: fold it into the bias of a Conv/Affine
        that feeds only this sum (after a residual Add, either branch will do)."""
        nir = self.nir
        target = next((self.nodes[s] for s in self.sources[node.input[0]]
                       if isinstance(self.nodes[s], (nir.Conv2d, nir.Conv1d, nir.Affine))
                       and self.fanout[id(self.nodes[s])] == 1), None)
        shape = self.shape[node.output[0]]
        flat = np.broadcast_to(bias, shape).reshape(shape[0], -1) if shape else None
        if flat is None or not np.all(flat == flat[:, :1]) or len(shape) not in (1, 3):
            return self._refuse(node, "adds a constant that no Conv/Affine bias can absorb")
        if target is None:  # no layer of its own: an identity Conv/Affine carries the bias
            target = self._identity(node, shape)
            target.bias = flat[:, 0].astype(np.float32)
            return
        target.bias = (target.bias + flat[:, 0]).astype(np.float32)
        self._alias(node)

    def _identity(self, node, shape):
        """An identity Affine ([F]) or 1x1 Conv2d ([C, H, W]) with zero bias on ``node``'s first
        input, which is what ``node``'s output reads."""
        eye = np.eye(shape[0], dtype=np.float32)
        zeros = np.zeros(shape[0], np.float32)
        layer = (self.nir.Affine(weight=eye, bias=zeros) if len(shape) == 1 else
                 self.nir.Conv2d(input_shape=tuple(shape[1:]), weight=eye[:, :, None, None], stride=(1, 1),
                                 padding=(0, 0), dilation=(1, 1), groups=1, bias=zeros))
        name = f"{node.name}/identity"
        self.fanout[id(layer)] = 1
        self._add(name, layer, self.sources[node.input[0]])
        self.sources[node.output[0]] = [name]
        return layer

    def _op_Conv(self, node) -> None:
        w = self.const[node.input[1]].astype(np.float32)
        b = self.const[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
        a = _attrs(node)
        dims = w.ndim - 2
        pads = list(a.get("pads", [0] * 2 * dims))
        if pads[:dims] != pads[dims:] or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return self._refuse(node, "uses asymmetric or automatic padding")
        if int(a.get("group", 1)) != 1:  # nir 1.0.8 takes weight.shape[1] as the input width
            return self._refuse(node, "is a grouped convolution, which nir cannot read back")
        kw = dict(weight=w, bias=b, stride=_tuple(a.get("strides", [1] * dims)), padding=_tuple(pads[:dims]),
                  dilation=_tuple(a.get("dilations", [1] * dims)), groups=int(a.get("group", 1)))
        in_shape = self.shape[node.input[0]][1:]
        cls = self.nir.Conv2d if dims == 2 else self.nir.Conv1d
        conv = cls(input_shape=_tuple(in_shape) if dims == 2 else in_shape[0], **kw)
        self.fanout[id(conv)] = self.uses.get(node.output[0], 0)
        self._add(node.name, conv, self.sources[node.input[0]])
        self.sources[node.output[0]] = [node.name]

    def _op_Gemm(self, node) -> None:
        a = _attrs(node)
        w = self.const[node.input[1]].astype(np.float32) * a.get("alpha", 1.0)
        w = w if a.get("transB", 0) else w.T
        if a.get("transA", 0):
            return self._refuse(node, "transposes its input")
        b = (self.const[node.input[2]] * a.get("beta", 1.0) if len(node.input) > 2
             else np.zeros(w.shape[0])).astype(np.float32)
        self._affine(node, w, np.broadcast_to(b, (w.shape[0],)).copy())

    def _op_MatMul(self, node) -> None:
        if node.input[1] not in self.const:
            return self._refuse(node, "multiplies two signals")
        w = self.const[node.input[1]].astype(np.float32).T
        self._affine(node, w, np.zeros(w.shape[0], np.float32))

    def _affine(self, node, w, b) -> None:
        affine = self.nir.Affine(weight=w, bias=b)
        self.fanout[id(affine)] = self.uses.get(node.output[0], 0)
        self._add(node.name, affine, self.sources[node.input[0]])
        self.sources[node.output[0]] = [node.name]

    def _op_AveragePool(self, node) -> None:
        a = _attrs(node)
        k = list(a["kernel_shape"])
        if any(a.get("pads", [0])) or len(k) != 2:
            return self._refuse(node, "is padded or not 2-D")
        self._pool(node, k, list(a.get("strides", k)))

    def _op_GlobalAveragePool(self, node) -> None:
        k = list(self.shape[node.input[0]][1:])
        self._pool(node, k, k)

    def _pool(self, node, kernel, stride) -> None:
        pool = self.nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array([0, 0]))
        self._add(node.name, pool, self.sources[node.input[0]])
        self.sources[node.output[0]] = [node.name]

    def _op_Flatten(self, node) -> None:
        shape = self.shape[node.input[0]]
        flat = self.nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        self._add(node.name, flat, self.sources[node.input[0]])
        self.sources[node.output[0]] = [node.name]

    def _op_Reshape(self, node) -> None:
        if len(self.shape.get(node.output[0], ())) != 1:
            return self._refuse(node, "reshapes to something other than [N, features]")
        self._op_Flatten(node)

    def _if_neuron(self, node) -> None:
        shape = self.shape[node.output[0]]
        theta = np.broadcast_to(self.const[node.input[1]], shape).astype(np.float32)
        v0 = np.broadcast_to(self.const[node.input[2]], shape).astype(np.float32)
        zero = if_neuron.reset_of(node) == "zero"
        meta = {"reset": "zero" if zero else "subtract", "v0": v0.copy(), "fire": ">" if zero else ">=",
                "spikes_per_step": 1}
        self._add(node.name, self.nir.IF(r=np.ones(shape, np.float32), v_threshold=theta.copy(),
                                         v_reset=np.zeros(shape, np.float32), metadata=meta),
                  self.sources[node.input[0]])
        self._add(f"{node.name}/scale", self.nir.Scale(scale=theta.copy()), [node.name])
        self.sources[node.output[0]] = [f"{node.name}/scale"]


class _Renamed:
    """A node seen with other inputs (Div by c handled as Mul by 1/c)."""

    def __init__(self, node, inputs):
        self.name, self.op_type, self.output, self.input = node.name, node.op_type, node.output, inputs


def _attrs(node: onnx.NodeProto) -> dict:
    return {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}


def _tuple(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)
