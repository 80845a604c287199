"""A layer's input current on phase 2's samples, block by block, in blocks sized by the memory budget.

Phase 2 reads a layer's current up to three times (search, measure, commit): each block's current
comes from the layer's segment (:mod:`.segments`) fed with the stored spike trains of earlier
layers (:mod:`.spikes`), and is kept in memory while it fits in ``CURRENT_CACHE_BYTES`` and a quarter
of the budget; beyond that it is computed again for each pass.
"""

from __future__ import annotations

import numpy as np

from ..graph import weights
from ..simulation.budget import Budget, MemoryBudgetError
from ..simulation.footprint import footprint
from ..snn.rewrite import build
from .segments import Block, Segment, block_feeds, blocks

CURRENT_CACHE_BYTES = 2 << 30


class LayerRuns:
    """A layer's input current on the phase-2 samples, block by block, in blocks sized by the budget.

    The blocks hold all T steps when a sample's do fit, else chunks of steps (the segment then
    comes from the SNN built for that many steps with its spiking max-pools' state carried). A
    current that does not depend on spikes (direct encoding) is computed once per sample range
    (``steps`` 1). Currents are kept in memory while they fit (module docstring)."""

    def __init__(self, ann, plan, params, snn, layer, available, calib, store, config, budget, held):  # noqa: PLR0913
        self.calib, self.store, self.config = calib, store, config
        self.constant = layer.current not in plan.time_major
        self.neurons = store.neurons(layer.output)
        fixed = held + store.ram_bytes
        self.room = min(CURRENT_CACHE_BYTES, max(0, budget.free(fixed)) // 4)
        segment = Segment(snn, layer.current, available, config)
        # a constant current computed from spikes (after a rate boundary) needs all T steps of them
        whole = self.constant and any(n in store for n in segment.inputs)
        size = self._size(segment, budget, fixed, config.T, chunkable=not whole)
        if size.steps < config.T and self.room:  # the kept currents give way first
            self.room = 0
            size = self._size(segment, budget, fixed, config.T, chunkable=not whole)
        if size.steps < config.T:
            segment, size = self._chunked(ann, plan, params, layer, available, budget, fixed, size.steps)
        self.segment, self.size = segment, size
        self.blocks = blocks(len(calib), config.T, size.samples, size.steps)
        self._kept: dict[Block, np.ndarray] = {}

    def _chunked(self, ann, plan, params, layer, available, budget, fixed, most: int):
        """The segment of the SNN built for the largest divisor of T up to ``most`` steps that fits
        (its spiking max-pools carry their state), and its run size."""
        for steps in [d for d in range(most, 0, -1) if self.config.T % d == 0]:
            model, record = build(ann, plan, params, steps, stateful=True)
            segment = Segment(model, layer.current, available, self.config, states=record.states)
            try:
                return segment, self._size(segment, budget, fixed, steps, chunkable=False)
            except MemoryBudgetError:
                if steps == 1:
                    raise
        raise AssertionError("unreachable: one step returns or raises above")

    def _size(self, segment: Segment, budget: Budget, fixed: int, steps: int, chunkable: bool = True):
        """Blocks for the segment plus what the kernel and the store hold per sample: the
        kernel's step temporaries and, per step, the unpacked input bits, the spikes (each step's
        and their concatenation) and their transposed copy for packing."""
        spikes = frozenset(n for n in segment.inputs if n in self.store)
        fp = footprint(segment.model, [segment.output, *segment.states.values()], steps, spikes,
                       {n: self.store.shape(n) for n in spikes})
        n_in = sum(self.store.neurons(name) for name in spikes)
        fp = fp.plus(static=32 * self.neurons, dynamic=n_in + 3.2 * self.neurons)
        held = fixed + weights.weight_bytes(segment.model) + self.room
        return budget.run_size("phase 2", fp, len(self.calib), steps, self.config.batch_size, held, chunkable)

    def __iter__(self):
        """(block, current [steps, samples, *shape]; steps 1 for a constant current). Consumers
        delete the current before asking for the next (the budget counts one block's)."""
        state, last = {}, None
        for block in self.blocks:
            if block in self._kept:
                yield block, self._kept[block]
                continue
            if block.t0 == 0:
                state, last = {}, None
            if self.constant and last is not None:
                current = last  # a constant current: one per sample range
            else:
                feeds = block_feeds(self.calib, block, self.store, self.segment.inputs)
                if self.segment.states:
                    current, state = self.segment.run(feeds, state)
                else:
                    current = self.segment.run(feeds)
                del feeds
                current = current.reshape(1 if self.constant else block.steps, block.samples, *current.shape[1:])
                last = current if self.constant else None
            if current.nbytes <= self.room:
                self._kept[block] = current
                self.room -= current.nbytes
            yield block, current
            del current

    def clear(self) -> None:
        self._kept.clear()
