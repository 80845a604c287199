"""Cutting a part out of a graph: the nodes that compute some tensors from others.

Phase 2's segments (:mod:`onnx2snn.calibration.segments`) and the step-by-step runner
(:mod:`onnx2snn.simulation.stepwise`) run parts of a converted graph: the nodes between given
inputs (graph inputs, or tensors fed from elsewhere) and given outputs. :class:`GraphIndex` is
built once per model so that each cut costs time in proportion to the part cut out.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

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
