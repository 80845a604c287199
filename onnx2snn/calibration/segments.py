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

from ..config import Config
from ..graph.cut import GraphIndex
from ..simulation.runtime import make_session


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
