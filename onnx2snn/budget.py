"""The memory budget: how many samples and time steps one onnxruntime run may take.

onnxruntime runs with its arena and memory patterns off (:func:`.runtime.make_session`), so a run
holds each tensor from the node that makes it to the last node that reads it, and returns it all
when it ends. The peak of a run is therefore the largest sum of tensors alive at one node, which
:func:`footprint` computes from the normalised ANN and the conversion plan, per sample:

    peak(b, s) = fixed + b * (S_i + s * D_i)    maximised over the nodes i of the run

with b samples and s time steps per run, S_i the bytes per sample of the tensors alive at node i that
have one row per sample (the analog input, readouts, fetched scores) and D_i those with one row per
sample *and step* (spike trains and everything computed from them: the SNN's T*B rows). Feeds and
fetched outputs live for the whole run. An IF layer also holds a copy of its current inside its
loop (and, when spikes are counted, their count buffers), a spiking max-pool its running sums and
maxima. ``fixed`` is the largest im2col buffer of a convolution (one image at a time).

:class:`Budget` turns a limit (``--memory-limit``; default :func:`default_limit`) into run sizes:
what is left after the process's memory when the conversion started (``baseline``: Python, the
libraries, the model's weights, the data) and what the stage holds besides the run (caches, a
session's copy of the weights) is split into runs over samples (at most ``--batch-size``), and
over time steps when one sample with all T steps does not fit -- the IF potentials (and spiking
max-pool sums) are carried from one chunk of steps to the next. If one sample at one step does not
fit, :class:`MemoryBudgetError` names the widest tensor and the bytes it needs.

Run sizes never change a result: each sample's arithmetic is the same in any run (see
``docs/scale.md`` for how this is checked), and every sum over samples or steps is taken in a
fixed order.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import onnx
from onnx import helper

from .errors import ConfigError
from .plan import Plan

log = logging.getLogger(__name__)

GIB = 1 << 30
DEFAULT_CAP = 4 * GIB  # the default budget is at most this ...
DEFAULT_SHARE = 0.5  # ... and at most this share of the memory available when it is set
SAFETY = 1.4  # measured peaks stay below the estimate times this (docs/scale.md)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10 ** 3, "kib": 1 << 10, "m": 1 << 20, "mb": 10 ** 6,
          "mib": 1 << 20, "g": GIB, "gb": 10 ** 9, "gib": GIB, "t": 1 << 40, "tb": 10 ** 12, "tib": 1 << 40}


class MemoryBudgetError(ConfigError):
    """A run does not fit the memory budget even with one sample and one time step."""


def parse_size(text: str | int) -> int:
    """Bytes from ``'2GiB'``, ``'512M'``, ``'1.5 GB'`` or a plain number of bytes."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise ConfigError(f"memory size '{text}' is not understood; write it like 2GiB, 512MiB or 4G")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def available_memory() -> int | None:
    """MemAvailable of this machine (Linux), or None when it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def default_limit() -> int:
    """min(4 GiB, half of the memory available now): enough for every ImageNet-size model we
    measured to convert at a speed close to an unlimited run (docs/scale.md), while leaving half of
    a small machine to everything else."""
    free = available_memory()
    return DEFAULT_CAP if free is None else int(min(DEFAULT_CAP, DEFAULT_SHARE * free))


def resident_memory() -> int:
    """This process's resident set size in bytes (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _page_size()
    except OSError:
        return 0


def _page_size() -> int:
    import os
    return os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclasses.dataclass(frozen=True)
class RunSize:
    """Samples and time steps per run, and the estimated peak bytes of one such run."""

    samples: int
    steps: int
    bytes: int


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


class Budget:
    """A memory limit for one conversion; see the module docstring. ``records`` lists the run sizes
    chosen, by stage, for the report."""

    def __init__(self, limit: int | None = None):
        self.limit = int(limit) if limit else default_limit()
        self.baseline = resident_memory()
        self.records: dict[str, list[RunSize]] = {}

    def free(self, held: int = 0) -> int:
        """Bytes a run may take: the limit less the baseline and ``held`` (what the stage keeps
        besides the run), less the safety margin of the estimate."""
        return int((self.limit - self.baseline - held) / SAFETY)

    def run_size(self, stage: str, fp: Footprint, samples: int, T: int = 1, max_batch: int | None = None,
                 held: int = 0) -> RunSize:
        """The largest run of at most ``max_batch`` samples (and all ``T`` steps, or the largest
        divisor of T when one sample with all steps does not fit) within :meth:`free`."""
        free = self.free(held)
        cap = max(1, min(samples, max_batch or samples))
        if fp.peak(1, T) <= free:
            per_sample = max(fp.peak(1, T) - fp.fixed, 1)
            size = RunSize(int(min(cap, max(1, (free - fp.fixed) // per_sample))), T, 0)
        else:
            steps = next((s for s in range(T, 0, -1) if T % s == 0 and fp.peak(1, s) <= free), None)
            if steps is None:
                raise self._too_small(stage, fp, held)
            size = RunSize(1, steps, 0)
        size = dataclasses.replace(size, bytes=fp.peak(size.samples, size.steps))
        self.records.setdefault(stage, []).append(size)
        log.debug("%s: runs of %d sample(s) x %d step(s), about %s of %s free", stage, size.samples, size.steps,
                  format_size(size.bytes), format_size(free))
        return size

    def _too_small(self, stage: str, fp: Footprint, held: int) -> MemoryBudgetError:
        name, shape, per_step = fp.widest
        need = int(SAFETY * fp.peak(1, 1)) + held + self.baseline
        return MemoryBudgetError(
            f"{stage}: one sample at one time step needs about {format_size(need)} (its widest tensor, "
            f"'{name}' {list(shape)}, takes {format_size(per_step)} per sample and step), more than the "
            f"memory limit of {format_size(self.limit)}; raise --memory-limit to at least {format_size(need)}")

    def report(self) -> dict:
        """The limit, the baseline and, per stage, the run sizes chosen (JSON-ready)."""
        stages = {}
        for stage, sizes in self.records.items():
            samples = sorted({s.samples for s in sizes})
            steps = sorted({s.steps for s in sizes})
            stages[stage] = {"runs": len(sizes), "samples": [samples[0], samples[-1]],
                             "steps": [steps[0], steps[-1]], "estimated_peak": max(s.bytes for s in sizes)}
        return {"limit": self.limit, "baseline": self.baseline, "stages": stages}


def footprint(model: onnx.ModelProto, outputs: list[str], inputs: list[str] | None = None,
              plan: Plan | None = None, counting: bool = False) -> Footprint:
    """Live bytes per node of a run of ``model`` (the normalised ANN, shapes inferred) computing
    ``outputs`` from ``inputs`` (default: the graph inputs). With ``plan`` the run is the SNN's:
    the plan's time-major tensors have a row per sample and step; ``counting``: spikes are counted
    (the evaluation's counters). Tensors of unknown shape count as the largest input of their node."""
    graph = model.graph
    shapes = _sample_bytes(model)
    constants = {t.name for t in graph.initializer}
    feeds = list(inputs) if inputs is not None else [i.name for i in graph.input if i.name not in constants]
    nodes = _needed(graph, outputs, set(feeds))
    time_major = set(plan.time_major) if plan else set()
    repeated = _repeated(nodes, plan) if plan else set()
    end = len(nodes)
    start = {name: 0 for name in feeds}
    last = {name: end for name in list(feeds) + list(outputs)}
    for i, node in enumerate(nodes):
        for name in node.input:
            if name in start and name not in outputs and name not in feeds:
                last[name] = max(last.get(name, i), i)
        for name in node.output:
            if name:
                start.setdefault(name, i)
                last.setdefault(name, i)
    static, dynamic = np.zeros(end + 1), np.zeros(end + 1)
    widest = ("", (), 0)
    for name, first in start.items():
        if name in constants:
            continue
        shape, size = shapes.get(name) or _guess(name, nodes, shapes)
        span = slice(first, last[name] + 1)
        # a fetched output is copied out of onnxruntime's blocked layout where it is made; a feed
        # is copied into it where it is first read
        copy = slice(first, first + 1) if name in outputs or name in feeds else slice(0, 0)
        if name in time_major or name in repeated:
            dynamic[span] += size
            dynamic[copy] += size
        if name not in time_major:
            static[span] += size
            static[copy] += size
        if (name in time_major) == bool(plan) and size > widest[2]:
            widest = (name, shape, size)
    layers = {layer.name: layer for layer in plan.layers} if plan else {}
    pools = set(plan.time_batched) if plan else set()
    for i, node in enumerate(nodes):
        if node.name in layers:
            current = shapes.get(layers[node.name].current, ((), 0))[1]
            dynamic[i] += current * (2.25 if counting else 1.0)  # the loop's copy (+ count buffers)
        elif node.name in pools and node.op_type in ("MaxPool", "GlobalMaxPool"):
            dynamic[i] += shapes.get(node.input[0], ((), 0))[1] + 3 * shapes.get(node.output[0], ((), 0))[1]
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


def _repeated(nodes, plan: Plan) -> set[str]:
    """Batch-dependent tensors computed once and repeated T times for time-batched nodes or IF
    layers (the rewrite's Tile): they are also held with a row per sample and step."""
    readers = set(plan.time_batched) | {layer.name for layer in plan.layers}
    return {name for node in nodes if node.name in readers for name in node.input
            if name and name not in plan.dynamic}


def _sample_bytes(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """Per tensor with a known shape: (shape of one sample, bytes of one sample)."""
    out = {}
    g = model.graph
    for v in list(g.value_info) + list(g.input) + list(g.output):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim[1:]]
        if not t.elem_type or not t.HasField("shape") or any(d <= 0 for d in dims):
            continue
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
        out[v.name] = (tuple(dims), int(np.prod(dims, dtype=np.int64)) * itemsize)
    return out


def _guess(name: str, nodes, shapes) -> tuple[tuple[int, ...], int]:
    """Size of a tensor whose shape is unknown: the largest known input of the node making it."""
    node = next((n for n in nodes if name in n.output), None)
    known = [shapes[i] for i in (node.input if node is not None else ()) if i in shapes]
    return max(known, key=lambda s: s[1]) if known else ((), 4)


def _im2col_bytes(nodes, model: onnx.ModelProto) -> int:
    """The largest im2col buffer of one image over the convolutions of the run."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    shapes = _sample_bytes(model)
    best = 0
    for node in nodes:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in dims:
            continue
        w = dims[node.input[1]]
        out = shapes.get(node.output[0])
        if out and len(w) >= 3:
            best = max(best, int(np.prod(w[1:])) * int(np.prod(out[0][1:])) * 4)
    return best
