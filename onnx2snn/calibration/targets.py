"""ANN targets for phase 2, from one streamed ANN pass over the calibration data.

For every spiking layer: the mean activation of each neuron over all calibration samples (E[a]),
and the activations of the *search set* -- the first samples (all of them up to 256, a tenth
of them beyond 2,560: :func:`search_samples`, ``Config.search_samples``) at a subset of neurons
(every channel, a fixed random set of positions, at most ``Config.search_neurons``) -- on which
thresholds are searched and errors reported. On small nets that is every neuron of most of the
data: measured, smaller search sets (fewer neurons or samples) cost accuracy there
(``docs/phase2_cost.md``).
Memory: one float per neuron plus the search set, per layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from ..config import Config
from ..data import Dataset
from ..graph import load
from ..graph.plan import Plan
from ..simulation.budget import Budget
from ..simulation.runtime import expose, make_session, plan_runs, release_memory, run_batches
from .if_kernel import workers

GROUP = 64  # samples per float32 group of E[a]'s sum (the batch size it was first computed with)


def search_samples(n: int, config: Config) -> int:
    """Size of the search set for ``n`` calibration samples: min(n, max(S, n/10)), S =
    ``config.search_samples`` (256).

    A small search set underestimates the tail of the activations, and the threshold search then
    prefers thresholds that clip samples it has not seen; 256 samples keep that rare."""
    return min(n, max(config.search_samples, n // 10))


@dataclasses.dataclass
class LayerTargets:
    name: str
    shape: tuple[int, ...]  # one sample's activation shape
    mean: np.ndarray  # E[a] per neuron over all samples, shape ``shape``
    index: np.ndarray  # flat indices of the search neurons
    channel: np.ndarray  # channel (axis 1) of each search neuron
    sample: np.ndarray  # a on the search set, [S, len(index)]

    @property
    def channels(self) -> int:
        return self.shape[0] if self.shape else 1


@dataclasses.dataclass
class Targets:
    layers: dict[str, LayerTargets]
    scores: np.ndarray | None = None  # the ANN's score output on the search set (if asked)

    def layer(self, name: str) -> LayerTargets:
        return self.layers[name]

    @property
    def nbytes(self) -> int:
        return sum(t.mean.nbytes + t.sample.nbytes + t.index.nbytes + t.channel.nbytes for t in self.layers.values())


def search_neurons(shape: tuple[int, ...], limit: int, seed: int = 0) -> np.ndarray:
    """Flat indices of up to ``limit`` neurons covering every channel (same positions in each)."""
    total = int(np.prod(shape)) if shape else 1
    if total <= limit:
        return np.arange(total)
    channels, positions = shape[0], total // shape[0]
    keep = max(1, limit // channels)
    chosen = np.sort(np.random.default_rng(seed).choice(positions, size=min(keep, positions), replace=False))
    return (np.arange(channels)[:, None] * positions + chosen[None, :]).reshape(-1)


def ann_targets(ann: onnx.ModelProto, plan: Plan, calib: Dataset, config: Config,
                score: str | None = None, budget: Budget | None = None) -> Targets:
    """E[a] per neuron on ``calib`` and a on its search set; ``score``: an output of ``ann`` to
    keep on the search set too. Runs are sized by ``budget``; E[a] sums the samples in the order
    of :class:`GroupSum`, which does not depend on how they are split into runs."""
    budget = budget or Budget(config.memory_limit)
    names = {layer.output: layer.name for layer in plan.layers}
    fetch = list(names) + ([score] if score else [])
    exposed = expose(ann, fetch)
    wanted = search_samples(len(calib), config)
    held = held_bytes(ann, plan, len(calib), config)
    size = plan_runs(budget, "ANN targets", exposed, fetch, len(calib), config, held)
    session = make_session(exposed, config, spin=False)
    sums, samples, layers, scores = {}, {}, {}, []
    for _, values in run_batches(session, calib, size.samples, fetch, "ANN targets"):
        if score and sum(len(s) for s in scores) < wanted:
            scores.append(values[score][: wanted - sum(len(s) for s in scores)].copy())
        for tensor, name in names.items():
            a = values[tensor]
            if name not in layers:
                shape = tuple(a.shape[1:])
                index = search_neurons(shape, config.search_neurons)
                positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
                layers[name] = (shape, index, index // positions)
                sums[name], samples[name] = GroupSum(shape), []
            sums[name].add(a)
            take = wanted - sum(len(s) for s in samples[name])
            if take > 0:
                samples[name].append(a.reshape(len(a), -1)[:take, layers[name][1]])
            del a  # nothing of this run is held during the next
    del session
    release_memory()
    return Targets({name: LayerTargets(name, shape, sums[name].total() / len(calib), index, channel,
                                       np.concatenate(samples[name]).astype(np.float32))
                    for name, (shape, index, channel) in layers.items()},
                   np.concatenate(scores) if scores else None)


class GroupSum:
    """A sum over samples in a fixed order: float32 over consecutive groups of :data:`GROUP`
    samples (each group one sample after the other, as numpy sums a [GROUP, ...] batch on axis
    0), the groups' sums added in float64. Samples may arrive in runs of any size."""

    def __init__(self, shape: tuple[int, ...]):
        self.sum = np.zeros(shape, np.float64)
        self.group, self.seen = None, 0

    def add(self, rows: np.ndarray) -> None:
        for row in rows:
            self.group = row.copy() if self.group is None else self.group + row
            self.seen += 1
            if self.seen % GROUP == 0:
                self.sum += self.group
                self.group = None

    def total(self) -> np.ndarray:
        return self.sum + self.group if self.group is not None else self.sum


def held_bytes(ann: onnx.ModelProto, plan: Plan, samples: int, config: Config) -> int:
    """What phase 2 holds besides its runs for ``samples`` samples: every layer's targets (E[a]
    in float64 per neuron, the search set in float32) and the search's currents and kernels."""
    shapes = load.sample_shapes(ann, infer=False)
    search, most = search_samples(samples, config), config.search_neurons
    sizes = [int(np.prod(shapes.get(layer.output, (1,)))) for layer in plan.layers]
    widest = max((min(n, most) for n in sizes), default=0)
    return sum(8 * n + 4 * search * min(n, most) for n in sizes) + search_work(search, widest, config)


def search_work(rows: int, neurons: int, config: Config) -> int:
    """The search's memory: its currents [T, rows, neurons] (and their sum) and, per worker
    thread, the IF kernel's temporaries (about 16 arrays of one step)."""
    per_step = rows * neurons * 4
    return per_step * (config.T + 1) + 16 * per_step * workers(config)
