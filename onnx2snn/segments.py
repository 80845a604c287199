"""Per-layer segments of a converted graph and a bit-packed cache of spike trains.

Phase 2 calibrates one spiking layer at a time on the SNN's own inputs. The *segment* of layer l is
the part of the SNN graph that computes l's input current from the graph inputs and the spike trains
of earlier layers; those spike trains come from the spike store (:mod:`.spikes`) instead of being recomputed, so
every linear op of the network runs once per pass over the calibration data. Each pass runs over
:class:`Block` s -- ranges of samples and of time steps -- sized by the memory budget.
The store itself is :mod:`.spikes`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import helper

from .config import Config
from .runtime import make_session
from . import weights


class GraphIndex:
    """A model's producers, initializers and value types, built once, so that each cut takes time
    in proportion to the part cut out: importing the whole graph for every layer's segment made
    phase 2 quadratic in the depth (8 s of DenseNet-121's layers' set-up on 8 samples)."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.model = model
        self.producer = {out: i for i, node in enumerate(g.node) for out in node.output if out}
        self.initializers = {t.name: t for t in g.initializer}
        self.values = {v.name: v for v in list(g.value_info) + list(g.input) + list(g.output)}
        self.graph_inputs = [i.name for i in g.input if i.name not in self.initializers]
        self._reads = [_reads(node) for node in g.node]

    def walk(self, outputs: list[str], available: set[str]) -> tuple[list[int], list[str]]:
        """(indices of the nodes computing ``outputs`` from ``available`` and the graph inputs, in
        graph order; the inputs they need: graph inputs and ``available`` tensors)."""
        keep, feeds, seen, todo = set(), set(), set(), list(outputs)
        inputs = set(self.graph_inputs)
        while todo:
            name = todo.pop()
            if not name or name in seen or name in self.initializers:
                continue
            seen.add(name)
            i = self.producer.get(name)
            if (name in available and (i is not None or name in inputs)) or (i is None and name in inputs):
                feeds.add(name)
            elif i is not None:
                keep.add(i)
                todo.extend(self._reads[i])
        order = [n for n in self.graph_inputs if n in feeds] + sorted(feeds - inputs)
        return sorted(keep), order

    def cut(self, outputs: list[str], available: set[str], untyped: type | None = None) -> onnx.ModelProto:
        """The part of the model computing ``outputs``, with the tensors in ``available`` (those that
        exist) cut from their producers and fed as graph inputs; graph inputs it does not need are
        dropped. ``untyped``: element type given to inputs and outputs whose type is unknown."""
        nodes, feeds = self.walk(outputs, available)
        g = self.model.graph
        out = weights.without_graph(self.model)
        graph = out.graph
        graph.name = g.name
        graph.node.extend(g.node[i] for i in nodes)
        used = {name for i in nodes for name in self._reads[i]}
        graph.initializer.extend(t for t in g.initializer if t.name in used)
        graph.input.extend(self._value(name, untyped) for name in feeds)
        graph.output.extend(self._value(name, untyped) for name in outputs)
        made = {o for i in nodes for o in g.node[i].output} - set(outputs)
        graph.value_info.extend(v for v in g.value_info if v.name in made)
        return out

    def _value(self, name: str, untyped) -> onnx.ValueInfoProto:
        value = self.values.get(name)
        if value is not None and value.type.tensor_type.elem_type:
            return value
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(untyped)) if untyped is not None else 0
        return helper.make_tensor_value_info(name, elem, None)


def _reads(node: onnx.NodeProto) -> list[str]:
    """The tensors a node reads: its inputs and the outer-scope names its subgraphs use."""
    names = [n for n in node.input if n]
    for attribute in node.attribute:
        for graph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
            inner = {o for n in graph.node for o in n.output} | {i.name for i in graph.input} | \
                {t.name for t in graph.initializer}
            names += [n for sub in graph.node for n in _reads(sub) if n not in inner]
    return names


def segment_inputs(model: onnx.ModelProto | GraphIndex, output: str, available: set[str]) -> set[str]:
    """Names of the graph inputs and ``available`` tensors that tensor ``output`` depends on: the
    inputs :class:`Segment` would have."""
    index = model if isinstance(model, GraphIndex) else GraphIndex(model)
    return set(index.walk([output], available)[1])


def cut(model: onnx.ModelProto | GraphIndex, outputs: list[str], available: set[str],
        untyped: type | None = None) -> onnx.ModelProto:
    """:meth:`GraphIndex.cut` of ``model`` (or of an index already built)."""
    index = model if isinstance(model, GraphIndex) else GraphIndex(model)
    return index.cut(outputs, available, untyped)


@dataclasses.dataclass(frozen=True)
class Block:
    """Samples ``start:stop`` at time steps ``t0:t1`` of the phase-2 samples."""

    start: int
    stop: int
    t0: int
    t1: int

    @property
    def samples(self) -> int:
        return self.stop - self.start

    @property
    def steps(self) -> int:
        return self.t1 - self.t0


def blocks(samples: int, T: int, per_run: int, steps: int) -> list[Block]:
    """Runs of ``per_run`` samples and ``steps`` steps (a divisor of T), steps innermost: a
    sample range's chunks of steps follow each other, so state is carried from one to the next."""
    return [Block(s, min(s + per_run, samples), t, t + steps)
            for s in range(0, samples, per_run) for t in range(0, T, steps)]


def block_feeds(data, block: Block, store, inputs: list[str]) -> dict[str, np.ndarray]:
    """Graph inputs of ``block``'s samples and the stored spike trains of its samples and steps."""
    feeds = {k: v[block.start:block.stop] for k, v in data.inputs.items()}
    feeds.update({n: store.get(n, block) for n in inputs if n in store})
    return feeds


class Segment:
    """The sub-graph computing tensor ``output`` of ``snn`` from the graph inputs and the spike
    trains in ``available`` (fed from the store: cut from their IF nodes); ``inputs`` are the ones
    it needs, in feed order. ``states`` (a stateful SNN's record: state input -> output after the
    steps): the segment's spiking max-pools carry their state from one chunk of steps to the next;
    :meth:`run` takes and returns it."""

    def __init__(self, snn: onnx.ModelProto | GraphIndex, output: str, available: set[str], config: Config,
                 states: dict[str, str] | None = None):
        self.output = output
        index = snn if isinstance(snn, GraphIndex) else GraphIndex(snn)
        model = index.cut([output], available)
        carried = {i.name: states[i.name] for i in model.graph.input if states and i.name in states}
        if carried:
            model = index.cut([output, *carried.values()], available)
        self.model, self.states = model, carried
        self.inputs = [i.name for i in model.graph.input if i.name not in carried]
        self.session = make_session(model, config, spin=False)

    def run(self, feeds: dict[str, np.ndarray], state: dict[str, np.ndarray] | None = None):
        """The output for ``feeds``; with states, (output, state after these steps)."""
        names = [self.output, *self.states.values()]
        values = self.session.run(names, {**{k: feeds[k] for k in self.inputs},
                                          **{k: (state or {}).get(k, _ZERO) for k in self.states}})
        if not self.states:
            return values[0]
        return values[0], dict(zip(self.states, values[1:]))


_ZERO = np.zeros((), np.float32)
