"""Per-layer segments of a converted graph and a bit-packed cache of spike trains.

Phase 2 calibrates one spiking layer at a time on the SNN's own inputs. The *segment* of layer l is
the part of the SNN graph that computes l's input current from the graph inputs and the spike trains
of earlier layers; those spike trains come from :class:`SpikeCache` instead of being recomputed, so
every linear op of the network runs once per pass over the calibration data.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .config import Config
from .runtime import make_session
from . import weights


def segment_inputs(model: onnx.ModelProto, output: str, available: set[str]) -> set[str]:
    """Names of the graph inputs and ``available`` tensors that tensor ``output`` depends on: the
    inputs :class:`Segment` would have, found by a walk up the graph (no copy of it)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    graph_inputs = {i.name for i in model.graph.input}
    found, seen, todo = set(), set(), [output]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in available or (name in graph_inputs and name not in producer):
            found.add(name)
        elif name in producer:
            todo.extend(n for n in producer[name].input if n)
    return found


def cut(model: onnx.ModelProto, outputs: list[str], available: set[str],
        untyped: type | None = None) -> onnx.ModelProto:
    """The part of ``model`` computing ``outputs``, with the tensors in ``available`` (those that
    exist) cut from their producers and fed as extra graph inputs; graph inputs it does not need
    are dropped. ``untyped``: element type given to outputs whose type is unknown."""
    graph = weights.import_graph(model)
    tensors = graph.tensors()
    boundary = [tensors[name] for name in sorted(available) if name in tensors]
    for tensor in boundary:
        tensor.inputs.clear()
    graph.inputs = list(graph.inputs) + boundary
    graph.outputs = [tensors[name] for name in outputs]
    for tensor in graph.outputs:
        tensor.dtype = tensor.dtype or untyped
    graph.cleanup(remove_unused_graph_inputs=True).toposort()
    out = weights.export_graph(graph)
    out.ir_version = model.ir_version
    return out


class Segment:
    """The sub-graph computing tensor ``output`` of ``snn`` from the graph inputs and the spike
    trains in ``available`` (fed from the cache: cut from their IF nodes); ``inputs`` are the ones
    it needs, in feed order.
    """

    def __init__(self, snn: onnx.ModelProto, output: str, available: set[str], config: Config):
        self.output = output
        model = cut(snn, [output], available)
        self.inputs = [i.name for i in model.graph.input]
        self.session = make_session(model, config, spin=False)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output], {k: feeds[k] for k in self.inputs})[0]

    def run_cached(self, feed: dict[str, np.ndarray], cache: "SpikeCache", batch: int) -> np.ndarray:
        """Run on calibration batch ``batch``: graph inputs from ``feed``, spike trains from ``cache``."""
        feeds = dict(feed)
        feeds.update({n: cache.get(n, batch) for n in self.inputs if n in cache})
        return self.run(feeds)


class SpikeCache:
    """Spike trains of IF layers on the calibration batches, one bit per neuron and step.

    A spike train with values in {0, theta} is stored as packed booleans plus theta, and restored
    exactly (theta * bit, in the spike dtype).
    """

    def __init__(self):
        self._data: dict[str, dict[int, tuple[np.ndarray, tuple, np.dtype]]] = {}
        self._theta: dict[str, np.ndarray] = {}
        self._out: dict[str, np.ndarray] = {}

    def put(self, name: str, batch: int, spikes: np.ndarray, theta: np.ndarray) -> None:
        """Store ``spikes`` ([T*B, ...]; booleans, or values in {0, theta} of theta's dtype)."""
        self._theta[name] = np.asarray(theta)
        fired = spikes if spikes.dtype == bool else spikes > 0
        self._data.setdefault(name, {})[batch] = (np.packbits(fired.ravel()), spikes.shape, self._theta[name].dtype)

    def get(self, name: str, batch: int) -> np.ndarray:
        """The spike train theta * bit; valid until the next ``get`` of ``name`` (which reuses the
        array: a fresh one per call costs more in page faults than the unpacking itself)."""
        bits, shape, dtype = self._data[name][batch]
        out = self._out.get(name)
        if out is None or out.shape != shape or out.dtype != dtype:
            out = self._out[name] = np.empty(shape, dtype)
        np.copyto(out, np.unpackbits(bits, count=out.size).reshape(shape))
        return np.multiply(out, self._theta[name], out=out)

    def drop(self, name: str) -> None:
        self._data.pop(name, None)
        self._theta.pop(name, None)
        self._out.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._data

    @property
    def nbytes(self) -> int:
        return sum(bits.nbytes for d in self._data.values() for bits, _, _ in d.values())
