"""Running an SNN in chunks of time steps, the state carried from one chunk to the next.

The time-batched model holds all T steps of a layer at once (T*B rows). When one sample with all T
steps does not fit the memory budget, or to run an SNN step by step (the textbook way, and the
reference the time-batched model is checked against), the same network is built for ``steps`` <
T steps with its state as graph inputs and outputs (:func:`.rewrite.build` with ``stateful=True``:
IF potentials, spiking max-pool sums and maxima) and called T / steps times, each call continuing
the previous one. What reaches the readout is summed over all T steps here, one step after the
other in float32 -- the order of the time-batched model's ``ReduceSum`` over its steps -- and the
readout (the time-batched model's own, from its sums on) runs once. Every operation is the one the
time-batched model performs, in the same order, so outputs, spikes and spike counts are identical
(``tests/test_stepwise.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from ..config import Config
from ..data import Dataset
from ..graph import weights
from ..graph.cut import cut
from ..graph.plan import Plan
from ..ops import if_neuron
from ..progress import progress
from ..snn.params import LayerParams
from ..snn.rewrite import build
from .budget import SNN_SAFETY, Budget
from .footprint import footprint
from .runtime import add_spike_counters, make_session, plan_runs, release_memory, run_batches


class ChunkedSNN:
    """The SNN of (``ann``, ``plan``, ``params``) for ``T`` steps, run ``steps`` steps per call
    (``steps`` divides T). ``watch``: tensors (e.g. a layer's spikes) whose value in every chunk
    :meth:`run` returns too; ``count``: also count each IF layer's spikes."""

    def __init__(self, ann: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], T: int, steps: int,
                 config: Config, watch: tuple[str, ...] = (), count: bool = False):
        if steps < 1 or T % steps:
            raise ValueError(f"chunks of {steps} steps do not divide T={T}")
        if plan.boundaries and steps < T:
            raise ValueError(f"rate boundaries ({', '.join(plan.boundaries)}) need all T steps before them: "
                             "the network cannot run in chunks of steps")
        self.T, self.steps, self.watch = T, steps, tuple(watch)
        chunk, record = build(ann, plan, params, steps, stateful=True)
        whole, full = build(ann, plan, params, T)
        self.counters = {}
        if count:
            chunk, self.counters = add_spike_counters(chunk)
        self.states, self.initial = record.states, record.initial
        self.sums = full.rates  # sum over all T steps -> the tensor summed
        counted = [n for pair in self.counters.values() for n in pair]
        self.step_outputs = list(dict.fromkeys(self.sums.values())) + list(self.states.values()) + \
            list(self.watch) + counted
        self.step_model = cut(chunk, self.step_outputs, set(), untyped=np.float32)
        self.step = make_session(self.step_model, config)
        self.step_inputs = [i.name for i in self.step.get_inputs()]
        self.outputs = [o.name for o in ann.graph.output]
        self.readout = make_session(cut(whole, self.outputs, set(self.sums), untyped=np.float32), config)
        self.readout_inputs = [i.name for i in self.readout.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]):
        """(model outputs after T steps, {watched tensor: [value in each chunk]},
        {IF node: (spikes per row of each chunk, neuron-steps)})."""
        state = {name: self.initial[name] for name in self.states}
        totals: dict[str, np.ndarray] = {}
        watched = {w: [] for w in self.watch}
        counts = {node: ([], 0) for node in self.counters}
        for _ in range(self.T // self.steps):
            available = {**feeds, **state}
            values = dict(zip(self.step_outputs,
                              self.step.run(self.step_outputs, {k: available[k] for k in self.step_inputs})))
            for source in dict.fromkeys(self.sums.values()):
                _accumulate(totals, source, values[source], self.steps)
            for w in self.watch:
                watched[w].append(values[w])
            for node, (spikes, size) in self.counters.items():
                counts[node][0].append(values[spikes])
                counts[node] = (counts[node][0], counts[node][1] + int(values[size]))
            state = {name: values[out] for name, out in self.states.items()}
        available = {**feeds, **{total: totals[source] for total, source in self.sums.items()}}
        outputs = self.readout.run(self.outputs, {k: available[k] for k in self.readout_inputs})
        return dict(zip(self.outputs, outputs)), watched, counts


def _accumulate(totals: dict[str, np.ndarray], name: str, rows: np.ndarray, steps: int) -> None:
    """Add the ``steps`` steps of ``rows`` ([steps*B, ...], time-major) to ``totals[name]``, one
    step after the other (the first step of a run starts the sum)."""
    for step in rows.reshape(steps, -1, *rows.shape[1:]):
        totals[name] = step.copy() if name not in totals else totals[name] + step


class StepwiseSNN:
    """The SNN run one step per call (``T`` given to :meth:`run`), watched tensors per step."""

    def __init__(self, ann: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], config: Config,
                 watch: tuple[str, ...] = ()):
        self._args = (ann, plan, params, config, tuple(watch))
        self._built: dict[int, ChunkedSNN] = {}

    def run(self, feeds: dict[str, np.ndarray], T: int):
        """(model outputs after T steps, {watched tensor: [value at step t]})."""
        if T not in self._built:
            ann, plan, params, config, watch = self._args
            self._built[T] = ChunkedSNN(ann, plan, params, T, 1, config, watch)
        outputs, watched, _ = self._built[T].run(feeds)
        return outputs, watched


@dataclasses.dataclass
class SNNRun:
    """Outputs of an SNN run over a data set, and (when counted) spikes and neuron-steps per IF node."""

    outputs: dict[str, np.ndarray]
    spikes: dict[str, int]
    neuron_steps: dict[str, int]

    def firing_rates(self) -> dict[str, float]:
        return {node: self.spikes[node] / self.neuron_steps[node] if self.neuron_steps[node] else 0.0
                for node in self.spikes}


def run_snn(snn: onnx.ModelProto, data: Dataset, config: Config, outputs: list[str], budget: Budget,
            stage: str, count: bool = False, source: tuple | None = None, stop=None) -> SNNRun:
    """Run the converted ``snn`` on ``data`` in runs sized by ``budget``: over samples, and over
    chunks of time steps when one sample with all T steps does not fit and the network is at hand
    to be rebuilt for fewer steps (``source`` = (ann, plan, params)). ``count``: count each IF
    layer's spikes (exact integers, whatever the runs). ``stop(outputs so far)``, called after
    each run with the outputs of the samples done: True ends the run there (the outputs are then
    those of the first samples only)."""
    T = if_neuron.time_steps(snn) or 1
    model, counters = add_spike_counters(snn) if count else (snn, {})
    names = list(outputs) + [n for pair in counters.values() for n in pair]
    chunkable = source is not None and not source[1].boundaries  # a rate boundary needs all T steps before it
    size = plan_runs(budget, stage, model, names, len(data), config, chunkable=chunkable)
    parts: dict[str, list] = {n: [] for n in outputs}
    spikes, steps = dict.fromkeys(counters, 0), dict.fromkeys(counters, 0)
    if size.steps == T:
        session = make_session(model, config)
        for _, values in run_batches(session, data, size.samples, names, stage):
            for n in outputs:
                parts[n].append(values[n])
            for node, (c, s) in counters.items():
                spikes[node] += int(values[c].sum(dtype=np.float64))
                steps[node] += int(values[s])
            if stop is not None and stop({n: np.concatenate(v) for n, v in parts.items()}):
                break
    else:
        chunked = _fitting_chunks(source, T, size.steps, config, budget, stage, count)
        for _, feed in progress(data.batches(1), total=len(data), desc=stage):
            values, _, counted = chunked.run(feed)
            for n in outputs:
                parts[n].append(values[n])
            for node, (rows, n_steps) in counted.items():
                spikes[node] += int(sum(r.sum(dtype=np.float64) for r in rows))
                steps[node] += n_steps
            if stop is not None and stop({n: np.concatenate(v) for n, v in parts.items()}):
                break
    session = chunked = None  # noqa: F841 - their arena memory is returned below
    release_memory()
    return SNNRun({n: np.concatenate(v) for n, v in parts.items()}, spikes, steps)


def _fitting_chunks(source, T: int, steps: int, config: Config, budget: Budget, stage: str,
                    count: bool) -> ChunkedSNN:
    """A ChunkedSNN of at most ``steps`` steps per call whose own footprint (its state inputs and
    outputs included) fits the budget with one sample per run."""
    ann, plan, params = source
    for s in [d for d in range(steps, 0, -1) if T % d == 0]:
        chunked = ChunkedSNN(ann, plan, params, T, s, config, count=count)
        fp = footprint(chunked.step_model, chunked.step_outputs, s)
        held = weights.weight_bytes(chunked.step_model)
        if fp.peak(1, s) <= budget.free(held, SNN_SAFETY) or s == 1:  # one step that does not fit raises here:
            budget.run_size(f"{stage} (in chunks of steps)", fp, 1, s, 1, held, chunkable=False, margin=SNN_SAFETY)
            return chunked
    raise AssertionError("unreachable: the one-step chunk returns or raises above")
