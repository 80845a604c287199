"""Stage 2: check support and plan which parts of the graph spike.

Definitions (on the normalised graph, in topological order):

* a **spiking layer** is a ReLU-like activation with a weighted op (Conv/Gemm/MatMul) downstream;
  it becomes an IF neuron. ReLU-like activations with no weighted op after them are *readout*
  activations: they stay analog and act on the time-averaged output.
* a tensor is **dynamic** (varies over time steps) when it depends on a spiking layer's output;
  Shape/Size outputs are not dynamic (they read shapes only).
* a node is **time-batched** when it has a dynamic input and a spiking layer downstream: it runs on
  T*B rows (T steps stacked, time-major) and must act linearly on spike trains (registry roles
  WEIGHTED, LINEAR or MAXPOOL, and its check passes). Shape/Size nodes are never time-batched:
  one whose result feeds a time-batched node reads the T*B-row tensor (so shape arithmetic gives
  T*B rows); one feeding only the readout reads the averaged tensor (B rows).
* a **rate boundary** is an op that runs on rates between spiking layers (registry role BOUNDARY,
  e.g. LRN, or an op type named in ``Config.rate_boundary``; see :mod:`.ops.boundary`): its
  dynamic inputs are averaged over T, and its outputs are not dynamic -- the layers after it see a
  constant current, like the first layer.

Nodes that only see the analog input (static region) or only the averaged output (readout region)
run exactly as in the ANN, so any op is fine there -- except a non-ReLU activation that feeds a
weighted op, which would be a non-spiking hidden layer. Every problem is collected first and
reported at once.
"""

from __future__ import annotations

import dataclasses

import onnx
import onnx_graphsurgeon as gs

from ..errors import UnsupportedModelError
from ..ops import Role, lookup, refusal
from . import weights


@dataclasses.dataclass(frozen=True)
class Layer:
    """One spiking layer: the activation node it replaces and its tensors."""

    name: str  # activation node name; its IF node is named f"{name}/if"
    op_type: str
    current: str  # pre-activation tensor (the IF input current)
    output: str  # activation tensor (ANN value a_l; spike train in the SNN)
    clip_max: float | None  # trained clip value m of Clip(0, m) / ReLU6 / ClipFloor, else None
    alpha: float | None = None  # trained v(0) / theta (a ClipFloor's shift), else None


@dataclasses.dataclass(frozen=True)
class Plan:
    layers: tuple[Layer, ...]
    readout_activations: tuple[str, ...]
    dynamic: frozenset[str]  # tensors that depend on spikes
    time_batched: frozenset[str]  # non-IF nodes that run on T*B rows
    time_major: frozenset[str]  # tensors with T*B rows: outputs of IF and time-batched nodes
    row_shape_readers: frozenset[str] = frozenset()  # Shape/Size nodes that must see the T*B rows
    boundaries: tuple[str, ...] = ()  # rate-boundary nodes between spiking layers (ops/boundary.py)

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)


def make_plan(model: onnx.ModelProto, boundary_ops: tuple[str, ...] = ()) -> Plan:
    """Plan the conversion of a normalised model; raise UnsupportedModelError listing every problem.
    ``boundary_ops``: op types (default domain) that are rate boundaries besides the registry's."""
    graph = weights.import_graph(model)
    nodes = list(graph.nodes)
    problems: list[tuple[str, str, str, str]] = []
    weighted_after = _reaches(nodes, lambda n: _role(n) is Role.WEIGHTED)
    bounds = {id(n) for n in nodes if _role(n) is Role.BOUNDARY or (n.op in boundary_ops and not n.domain)}
    spiking, readout = [], []
    for node in nodes:
        spec = lookup(node)
        if spec is None or spec.role not in (Role.ACTIVATION, Role.NONLINEAR) or id(node) in bounds:
            continue
        reason = spec.check(node, set()) if spec.check else None
        if not weighted_after[id(node)]:
            readout += [node.name] if spec.role is Role.ACTIVATION and not reason else []
        elif reason or spec.role is Role.NONLINEAR:
            problems.append((node.name, node.op, f"cannot become a spiking layer: {reason}", spec.hint))
        else:
            spiking.append(node)
    if not spiking and not problems:
        raise UnsupportedModelError(
            "the model has no ReLU activation feeding a Conv/Gemm/MatMul layer, so there is nothing "
            "to turn into spiking neurons; onnx2snn converts ReLU networks (Relu, Clip(0, m), "
            "Max(x, 0), LeakyRelu(alpha=0), QCFS clip-floor)")
    dynamic = _dynamic_tensors(nodes, {id(n) for n in spiking}, bounds)
    spiking_ids = {id(n) for n in spiking}
    spikes_after = _reaches(nodes, lambda n: id(n) in spiking_ids)
    between = [n for n in nodes if id(n) not in spiking_ids and spikes_after[id(n)]
               and any(t.name in dynamic for t in n.inputs) and _role(n) is not Role.SHAPE]
    batched = [n for n in between if id(n) not in bounds]
    boundaries = tuple(n.name for n in between if id(n) in bounds)
    problems += _check_time_batched(batched, dynamic)
    if problems:
        raise UnsupportedModelError(
            f"{len(problems)} node(s) cannot be converted to a spiking network "
            "(nothing was written):", problems)
    layers = tuple(_layer(n) for n in spiking)
    time_major = {t.name for n in spiking + batched for t in n.outputs}
    batched_ids = {id(n) for n in batched}
    feeds_batched = _reaches(nodes, lambda n: id(n) in batched_ids)
    shape_readers = {n.name for n in nodes if _role(n) is Role.SHAPE and feeds_batched[id(n)]
                     and any(t.name in time_major for t in n.inputs)}
    return Plan(layers, tuple(readout), frozenset(dynamic), frozenset(n.name for n in batched),
                frozenset(time_major), frozenset(shape_readers), boundaries)


def _role(node: gs.Node) -> Role | None:
    spec = lookup(node)
    return spec.role if spec else None


def _reaches(nodes: list[gs.Node], target) -> dict[int, bool]:
    """For each node: is a node satisfying ``target`` strictly downstream of it?"""
    reach: dict[int, bool] = {}
    for node in reversed(nodes):
        consumers = [c for t in node.outputs for c in t.outputs]
        reach[id(node)] = any(target(c) or reach.get(id(c), False) for c in consumers)
    return reach


def _dynamic_tensors(nodes: list[gs.Node], spiking_ids: set[int], bounds: set[int]) -> set[str]:
    """Tensors that vary over time steps: spiking layers' outputs and what is computed from them,
    except through Shape/Size (shapes only) and rate boundaries (they see the rate)."""
    dynamic: set[str] = set()
    for node in nodes:
        if id(node) in spiking_ids or (id(node) not in bounds and _role(node) is not Role.SHAPE
                                       and any(t.name in dynamic for t in node.inputs)):
            dynamic.update(t.name for t in node.outputs)
    return dynamic


def _check_time_batched(batched: list[gs.Node], dynamic: set[str]):
    problems = []
    for node in batched:
        spec = lookup(node)
        if spec is None:
            problems.append((node.name, node.op, *refusal(node)))
        elif spec.role in (Role.WEIGHTED, Role.LINEAR, Role.MAXPOOL) and spec.check:
            reason = spec.check(node, dynamic)
            if reason:
                problems.append((node.name, node.op, reason, spec.hint))
    return problems


def _layer(node: gs.Node) -> Layer:
    spec = lookup(node)
    signal = next(t for t in node.inputs if not isinstance(t, gs.Constant))
    clip_max = spec.clip_max(node) if spec.clip_max else None
    alpha = spec.alpha(node) if spec.alpha else None
    return Layer(node.name, node.op, signal.name, node.outputs[0].name, clip_max, alpha)
