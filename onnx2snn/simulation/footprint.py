"""The footprint of one onnxruntime run: the bytes alive at each node, per sample and per step.

onnxruntime runs with memory patterns off and one arena that grows by exactly what a run asks
(:func:`.runtime.make_session`), so a run holds each tensor from the node that makes it to the last
node that reads it. The peak of a run is therefore the largest sum of tensors alive at one node,
computed here from shape inference on one sample::

    peak(b, s) = fixed + b * (S_i + s * D_i)    maximised over the nodes i of the run

with b samples and s time steps per run, S_i the bytes per sample of the tensors alive at node i that
have one row per sample (the analog input, readouts, fetched scores) and D_i those with one row per
sample *and step* (spike trains and everything computed from them: the SNN's T*B rows). Feeds and
fetched outputs live for the whole run (and are copied once into or out of onnxruntime's blocked
layout). An IF layer also holds a copy of its current inside its loop. ``fixed`` is the largest
im2col buffer of a convolution (one image at a time).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx
from onnx import helper, shape_inference

from ..graph import weights
from ..ops import if_neuron

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Footprint:
    """Live bytes per node of one run (see the module docstring)."""

    static: np.ndarray  # per node: bytes per sample
    dynamic: np.ndarray  # per node: bytes per sample and time step
    fixed: int
    widest: tuple[str, tuple[int, ...], int]  # (tensor, per-sample shape, bytes per sample and step)

    def peak(self, samples: int, steps: int = 1) -> int:
        if not self.static.size:
            return self.fixed
        return int(self.fixed + samples * np.max(self.static + steps * self.dynamic))

    def plus(self, static: float = 0, dynamic: float = 0) -> Footprint:
        """This footprint with more bytes per sample (and per sample and step) at every node:
        what the caller holds per sample of the run besides onnxruntime (e.g. its outputs' copies)."""
        return dataclasses.replace(self, static=self.static + static, dynamic=self.dynamic + dynamic)


def footprint(model: onnx.ModelProto, outputs: list[str] | None = None, steps: int = 1,
              spikes: frozenset[str] | set[str] = frozenset(),
              shapes: dict[str, tuple[int, ...]] | None = None) -> Footprint:
    """Live bytes per node of one run of ``model`` as it is run (an ANN with exposed outputs, a
    converted SNN for ``steps`` time steps, a segment of one, a kernel) computing ``outputs``
    (default: all of them). ``spikes``: the graph inputs that are spike trains (``steps`` rows per
    sample). Sizes come from shape inference on one sample: a tensor with one row per sample is
    held once, one with more rows (the T*B rows of spike trains) once per time step. An IFNeuron
    also holds a copy of its current inside its loop. Tensors of unknown shape count as the
    largest input of their node. ``shapes``: one sample's shape of graph inputs whose declared
    shape is unknown (a segment's spike trains after a spiking max-pool: the SNN's own shape
    inference cannot follow the time axis through it with a symbolic batch)."""
    graph = model.graph
    outputs = list(outputs) if outputs is not None else [o.name for o in graph.output]
    constants = {t.name for t in graph.initializer}
    feeds = [i.name for i in graph.input if i.name not in constants]
    sizes = _one_sample(model, {name: steps if name in spikes else 1 for name in feeds}, shapes or {})
    nodes = _needed(graph, outputs, set(feeds))
    end = len(nodes)
    start = {name: 0 for name in feeds}
    last = {name: end for name in feeds + outputs}
    for i, node in enumerate(nodes):
        for name in node.input:
            if name in last and last[name] < end:
                last[name] = max(last[name], i)
        for name in node.output:
            if name:
                start.setdefault(name, i)
                last.setdefault(name, i)
    static, dynamic = np.zeros(end + 1), np.zeros(end + 1)
    widest = ("", (), 0)
    for name, first in start.items():
        shape, size = sizes.get(name) or _guess(name, nodes, sizes)
        timed = steps > 1 and bool(shape) and shape[0] > 1
        per = size / steps if timed else size
        target = dynamic if timed else static
        target[first:last[name] + 1] += per
        if name in outputs or name in feeds:
            target[first] += per  # copied out of (into) onnxruntime's blocked layout where made (read)
        if per > widest[2] and (timed or steps == 1):
            widest = (name, shape[1:], int(per))
    for i, node in enumerate(nodes):
        if if_neuron.is_if_neuron(node):  # the loop's copy of its current
            shape, size = sizes.get(node.input[0]) or _guess(node.input[0], nodes, sizes)
            dynamic[i] += size / steps
    return Footprint(static, dynamic, _im2col_bytes(nodes, model), widest)


def _needed(graph: onnx.GraphProto, outputs: list[str], available: set[str]) -> list[onnx.NodeProto]:
    """The nodes computing ``outputs`` from ``available`` and the initializers, in graph order."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    keep, todo = set(), list(outputs)
    while todo:
        name = todo.pop()
        i = producer.get(name)
        if name in available or i is None or i in keep:
            continue
        keep.add(i)
        todo.extend(n for n in graph.node[i].input if n)
    return [graph.node[i] for i in sorted(keep)]


def _one_sample(model: onnx.ModelProto, rows: dict[str, int],
                shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[tuple[int, ...], int]]:
    """Shape inference with each graph input's batch axis set to ``rows[name]`` (and the inputs
    in ``shapes`` given that shape after it): per tensor of known shape, (shape of one sample's
    rows, bytes)."""
    sample = weights.stub_copy(model)
    for value in sample.graph.input:
        if value.name in shapes and value.name in rows:
            value.type.tensor_type.shape.Clear()
            for d in (rows[value.name], *shapes[value.name]):
                value.type.tensor_type.shape.dim.add().dim_value = int(d)
            continue
        dims = value.type.tensor_type.shape.dim
        if value.name in rows and len(dims):
            dims[0].Clear()
            dims[0].dim_value = rows[value.name]
    del sample.graph.value_info[:]
    try:
        sample = shape_inference.infer_shapes(sample, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - sizes are then guessed from neighbours
        log.debug("shape inference for the memory estimate failed: %s", exc)
    out = {}
    g = sample.graph
    for v in list(g.value_info) + list(g.input) + list(g.output):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim]
        if not t.elem_type or not t.HasField("shape") or any(d <= 0 for d in dims):
            continue
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
        out[v.name] = (tuple(dims), int(np.prod(dims, dtype=np.int64)) * itemsize)
    return out


def _guess(name: str, nodes, sizes) -> tuple[tuple[int, ...], int]:
    """Size of a tensor whose shape is unknown: the largest known input of the node making it."""
    node = next((n for n in nodes if name in n.output), None)
    known = [sizes[i] for i in (node.input if node is not None else ()) if i in sizes]
    return max(known, key=lambda s: s[1]) if known else ((1,), 4)


def _im2col_bytes(nodes, model: onnx.ModelProto) -> int:
    """The largest im2col buffer of one image over the convolutions of the run (from the
    weights' dims and the model's inferred output shapes)."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    spatial = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim[2:]] for v in model.graph.value_info}
    best = 0
    for node in nodes:
        w = dims.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        out = spatial.get(node.output[0])
        if w and len(w) >= 3 and out and all(d > 0 for d in out):
            best = max(best, int(np.prod(w[1:])) * int(np.prod(out)) * 4)
    return best
