"""Stage 5: rewrite the ANN into a time-batched SNN graph.

Layout: every dynamic tensor holds T*B rows, time-major (row t*B + b is sample b at step t).

* Each spiking layer's activation node becomes ``IFNeuron(current, threshold, v0)`` named
  ``<activation>/if``, writing the activation's output tensor (so downstream nodes are unchanged).
  A phase-2 bias current is an ``Add`` (``<activation>/if/bias``) on the current, so the user's
  weights stay as they were.
* Direct encoding: a current that does not depend on spikes (e.g. the first layer's) is computed
  once on B rows and repeated T times (``<tensor>/repeat``, a Tile) where a time-batched node or an
  IF neuron needs it.
* Readout: where a dynamic tensor reaches a node that is not time-batched, or a graph output, it is
  replaced by its mean over the T steps (``<tensor>/rate``). Affine ops commute with the mean, so
  the output layer computes ``W mean_t(s_t) + b`` -- the mean over T of the current reaching it --
  and non-linear output ops (Softmax, ArgMax, ...) see the averaged value.
* Max-pooling between spiking layers becomes a spiking max-pool (see :mod:`.ops.spiking_pool`).

The pass ends with ``cleanup().toposort()``; generated names derive from the original ones, so
the result is deterministic. The names are not an interface: what the pass built is its
:class:`Record`, returned to the caller and written to the model's metadata
(``onnx2snn.record``, JSON) for readers of a saved SNN; no reader parses a generated name.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .._version import __version__
from ..graph import weights
from ..graph.load import infer_shapes, restore_output_types
from ..graph.plan import Plan
from ..ops import Role, clip_floor, if_neuron, lookup
from .params import LayerParams
from .spiking_pool import spiking_max_pool
from .time_axis import const, to_steps


@dataclasses.dataclass(frozen=True)
class Record:
    """What :func:`build` made, for the readers of the SNN (runners, phase 2's segments).

    ``neurons``: layer name -> its IFNeuron node. ``rates``: for each readout, the tensor holding
    the sum over the T steps (a ``ReduceSum``; the rate is it times 1/T) -> the time-major tensor
    summed. ``readouts``: the readout's rate tensor (what later nodes and outputs read) -> the
    time-major tensor it averages; ``readout_nodes``: every node the readouts added. ``pools``:
    each spiking max-pool (the ANN's MaxPool name) -> the nodes that replace it. ``repeats``: each
    ``Tile`` of a constant current over the steps -> the tensor repeated. ``states`` (stateful
    builds): state input -> the output holding its value after the run's steps; ``initial``: the
    state inputs' values before the first step (the last two are not written to the metadata)."""

    T: int
    neurons: dict[str, str]
    rates: dict[str, str]
    readouts: dict[str, str] = dataclasses.field(default_factory=dict)
    readout_nodes: tuple[str, ...] = ()
    pools: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    repeats: dict[str, str] = dataclasses.field(default_factory=dict)
    states: dict[str, str] = dataclasses.field(default_factory=dict)
    initial: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    KEY = "onnx2snn.record"

    def to_json(self) -> str:
        fields = ("T", "neurons", "rates", "readouts", "readout_nodes", "pools", "repeats")
        return json.dumps({f: getattr(self, f) for f in fields}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def read(cls, model: onnx.ModelProto) -> Record | None:
        """The record a converted model carries in its metadata, or None (not onnx2snn's SNN)."""
        text = next((p.value for p in model.metadata_props if p.key == cls.KEY), None)
        if text is None:
            return None
        data = json.loads(text)
        data["readout_nodes"] = tuple(data["readout_nodes"])
        data["pools"] = {k: tuple(v) for k, v in data["pools"].items()}
        return cls(**data)


def to_snn(model: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], T: int,
           metadata: dict[str, str] | None = None, spiking_pool: bool = True,
           stateful: bool = False) -> onnx.ModelProto:
    """The SNN for ``T`` steps with the IF parameters ``params`` (by layer name); see :func:`build`."""
    return build(model, plan, params, T, metadata, spiking_pool, stateful)[0]


def build(model: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], T: int,
          metadata: dict[str, str] | None = None, spiking_pool: bool = True,
          stateful: bool = False) -> tuple[onnx.ModelProto, Record]:
    """The SNN for ``T`` steps with the IF parameters ``params`` (by layer name), and its record.

    ``spiking_pool=False`` leaves max-pooling as a plain per-step max over spikes (the naive
    conversion, kept only to measure what the spiking max-pool fixes). ``stateful=True`` builds T
    steps that continue a run instead of starting one: the state is graph inputs and outputs,
    ``<layer>/if/v`` -> ``<layer>/if/final_potential`` for every IF neuron and ``<pool>/count``,
    ``<pool>/max`` -> ``..._next`` for every spiking max-pool (:mod:`onnx2snn.simulation.stepwise` runs a network in
    such chunks of steps, phase 2 its segments)."""
    graph = weights.import_graph(model)
    for tensor in graph.tensors().values():
        if tensor.name in plan.time_major and tensor not in graph.outputs:
            tensor.shape = None  # the ANN's [N, ...] becomes [T*N, ...]; re-inferred at the end
    nodes = {n.name: n for n in graph.nodes}
    start = len(graph.nodes)
    rates, readouts = _insert_readout(graph, plan, T)
    readout_nodes = tuple(n.name for n in graph.nodes[start:])
    tiles: dict[str, gs.Variable] = {}
    states: dict[str, str] = {}
    pools: dict[str, tuple[str, ...]] = {}
    for layer in plan.layers:
        states.update(_replace_activation(graph, nodes[layer.name], layer.current, params[layer.name], T, plan,
                                          tiles, stateful))
    for name in sorted(plan.time_batched):
        node = nodes[name]
        for i, tensor in enumerate(node.inputs):
            if _needs_repeat(tensor, plan):
                node.inputs[i] = _repeat(graph, tensor, T, tiles)
        spec = lookup(node)
        if spiking_pool and spec is not None and spec.role is Role.MAXPOOL:
            start = len(graph.nodes)
            states.update(spiking_max_pool(graph, node, T, stateful))
            pools[name] = tuple(n.name for n in graph.nodes[start:])
    graph.cleanup().toposort()
    snn = weights.export_graph(graph)
    restore_output_types(snn, model)
    snn.ir_version = max(model.ir_version, 8)
    resets = {p.reset for p in params.values()} or {"subtract"}
    if len(resets) > 1:
        raise ValueError(f"one SNN has one reset mode, got {sorted(resets)}")
    if_neuron.install(snn, T, resets.pop())
    snn = clip_floor.inline(snn)  # a clip-floor left as a readout activation: back to standard ops
    extra = dict(metadata or {})
    if plan.boundaries:
        extra["onnx2snn.rate_boundaries"] = ("computed on rates (mean over T), not event-driven: "
                                             + ", ".join(plan.boundaries))
    potentials = {f"{layer.name}/if/v": layer.name for layer in plan.layers}
    initial = {name: np.asarray(params[potentials[name]].v0) if name in potentials else np.zeros((), np.float32)
               for name in states}
    record = Record(T, {layer.name: f"{layer.name}/if" for layer in plan.layers}, rates, readouts, readout_nodes,
                    pools, {tile.name: src for src, tile in tiles.items()}, states, initial)
    extra[Record.KEY] = record.to_json()
    _set_metadata(snn, model, T, extra)
    return infer_shapes(snn), record


def _replace_activation(graph, node, current_name, p: LayerParams, T, plan, tiles, stateful=False):  # noqa: PLR0913
    """Replace the activation ``node`` by an IFNeuron; returns its state pair (stateful builds)."""
    current = next(t for t in node.inputs if t.name == current_name)
    base = f"{node.name}/if"
    dtype = current.dtype if current.dtype is not None else np.float32
    if p.bias is not None:
        biased = gs.Variable(f"{base}/biased_current", dtype=dtype, shape=current.shape)  # a repeat needs its rank
        bias = gs.Constant(f"{base}/bias", np.asarray(p.bias, dtype=dtype))
        graph.nodes.append(gs.Node("Add", f"{base}/bias", inputs=[current, bias], outputs=[biased]))
        current = biased
    if current_name not in plan.dynamic:
        current = _repeat(graph, current, T, tiles)
    theta = gs.Constant(f"{base}/threshold", np.asarray(p.threshold, dtype=dtype))
    v0 = gs.Constant(f"{base}/v0", np.asarray(p.v0, dtype=dtype))
    spikes = node.outputs[0]
    node.outputs.clear()
    node.inputs.clear()
    final = gs.Variable(f"{base}/final_potential", dtype=dtype)
    if stateful:  # the membrane potential is state: fed in, and read out after the steps
        v0 = gs.Variable(f"{base}/v", dtype=dtype)
        graph.inputs.append(v0)
        graph.outputs.append(final)
    graph.nodes.append(gs.Node(if_neuron.OP_TYPE, base, attrs=if_neuron.attributes(T, p.reset),
                               inputs=[current, theta, v0], outputs=[spikes, final], domain=if_neuron.DOMAIN))
    return {v0.name: final.name} if stateful else {}


def _needs_repeat(tensor, plan: Plan) -> bool:
    """A batch-dependent floating-point tensor that is constant over time (computed once)."""
    if isinstance(tensor, gs.Constant) or not tensor.name or tensor.name in plan.dynamic:
        return False
    return tensor.dtype is None or np.issubdtype(np.dtype(tensor.dtype), np.floating)


def _repeat(graph, tensor, T, tiles):
    """``tensor`` [B, ...] repeated T times on axis 0 -> [T*B, ...] (time-major); shared."""
    if tensor.name in tiles:
        return tiles[tensor.name]
    if tensor.shape is not None:
        repeats = const(f"{tensor.name}/repeat/repeats", [T] + [1] * (len(tensor.shape) - 1))
    else:  # rank unknown to shape inference (e.g. after ai.onnx.ml ops): [T, 1, ..., 1] at run time
        repeats = _dynamic_repeats(graph, tensor, T)
    out = gs.Variable(f"{tensor.name}/repeat", dtype=tensor.dtype)
    graph.nodes.append(gs.Node("Tile", f"{tensor.name}/repeat", inputs=[tensor, repeats], outputs=[out]))
    tiles[tensor.name] = out
    return out


def _dynamic_repeats(graph, tensor, T):
    base = f"{tensor.name}/repeat"
    v = lambda s: gs.Variable(f"{base}/{s}", dtype=np.int64)  # noqa: E731
    shape, rank, rest, ones, repeats = v("shape"), v("rank"), v("rank_minus_1"), v("ones"), v("repeats")
    one = gs.Constant(f"{base}/one_value", np.asarray([1], dtype=np.int64))
    graph.nodes += [
        gs.Node("Shape", f"{base}/shape", inputs=[tensor], outputs=[shape]),
        gs.Node("Shape", f"{base}/rank", inputs=[shape], outputs=[rank]),
        gs.Node("Sub", f"{base}/rank_minus_1", inputs=[rank, const(f"{base}/one", [1])], outputs=[rest]),
        gs.Node("ConstantOfShape", f"{base}/ones", attrs={"value": one}, inputs=[rest], outputs=[ones]),
        gs.Node("Concat", f"{base}/repeats", attrs={"axis": 0}, inputs=[const(f"{base}/T", [T]), ones],
                outputs=[repeats]),
    ]
    return repeats


def _insert_readout(graph, plan: Plan, T) -> tuple[dict[str, str], dict[str, str]]:
    """Replace dynamic tensors seen by non-time-batched consumers (and outputs) by their T-mean;
    returns the record's ``rates`` {sum over the steps: the tensor summed} and ``readouts``
    {rate: the tensor averaged}.

    Runs on the ANN graph before any other change: time-batched nodes and spiking activations are
    the consumers that keep seeing T*B rows."""
    batched = plan.time_batched | plan.row_shape_readers | {layer.name for layer in plan.layers}
    rates, readouts = {}, {}
    for tensor in [t for t in graph.tensors().values() if t.name in plan.time_major]:
        readers = [n for n in tensor.outputs if n.name not in batched]
        is_output = tensor in graph.outputs
        if not readers and not is_output:
            continue
        rate = mean_over_time(graph, tensor, T)
        for node in readers:
            node.inputs[node.inputs.index(tensor)] = rate
        if is_output:
            graph.outputs[graph.outputs.index(tensor)] = rate
            rate.name, tensor.name = tensor.name, f"{tensor.name}/spikes"
            rate.dtype, rate.shape = tensor.dtype, tensor.shape
        rates[rate.inputs[0].inputs[0].name] = tensor.name
        readouts[rate.name] = tensor.name
    return rates, readouts


def mean_over_time(graph, tensor, T):
    """``mean_t x[t*B:(t+1)*B]``: view [T*B, ...] as [T, B, ...], sum axis 0 (``<base>/sum``),
    times 1/T."""
    base = f"{tensor.name}/rate"
    dtype = tensor.dtype if tensor.dtype is not None else np.float32
    steps, _ = to_steps(graph, tensor, T, base)
    total, out = gs.Variable(f"{base}/sum", dtype=dtype), gs.Variable(base, dtype=dtype)
    graph.nodes += [
        gs.Node("ReduceSum", f"{base}/sum", attrs={"keepdims": 0},
                inputs=[steps, const(f"{base}/axes", [0])], outputs=[total]),
        gs.Node("Mul", base, inputs=[total, const(f"{base}/scale", 1.0 / T, dtype)], outputs=[out]),
    ]
    return out


def _set_metadata(snn, ann, T, extra):
    props = {p.key: p.value for p in ann.metadata_props}
    props.update({
        "onnx2snn.version": __version__,
        "onnx2snn.T": str(T),
        "onnx2snn.neuron": "integrate-and-fire, reset by subtraction, spike value = threshold",
        "onnx2snn.encoding": "direct (analog input at every step)",
        "onnx2snn.layout": "IFNeuron tensors hold T*B rows, time-major",
        "onnx2snn.output": "mean over T of the current reaching the output",
    })
    props.update(extra)
    del snn.metadata_props[:]
    for key in sorted(props):
        snn.metadata_props.add(key=key, value=props[key])
