"""The memory budget: how many samples and time steps one onnxruntime run may take.

A run's peak is the largest sum of tensors alive at one node, per sample and per sample and step
(:mod:`.footprint`): ``peak(b, s) = fixed + b * (S_i + s * D_i)`` maximised over the run's nodes.
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

from ..config import parse_size  # noqa: F401 - part of this module's API
from ..errors import ConfigError
from .footprint import Footprint

log = logging.getLogger(__name__)

GIB = 1 << 30
DEFAULT_CAP = 4 * GIB  # the default budget is at most this ...
DEFAULT_SHARE = 0.5  # ... and at most this share of the memory available when it is set
SAFETY = 1.4  # measured peaks stay below the estimate times this (docs/scale.md)
# A whole SNN run held more than its liveness estimate in onnxruntime's arena, the more the more
# samples per run: DenseNet-121's SNN at T = 8, 1.79x at 16 samples and 2.19x at 31 (1.07x with the
# arena off, at 1.7x the time; tools/bench_arena.py): such runs take this margin instead.
SNN_SAFETY = 2.2


class MemoryBudgetError(ConfigError):
    """A run does not fit the memory budget even with one sample and one time step."""


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


def peak_rss() -> int | None:
    """This process's peak resident set size so far in bytes (VmHWM, Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


_MMAP_THRESHOLD = 1 << 20
_RETURNING: list[bool] = []


def return_freed_memory() -> None:
    """Make glibc map every allocation of 1 MiB or more on its own, so a freed array leaves the
    process (once per process; nothing elsewhere). By default glibc raises that threshold to
    32 MiB after the first large free, carves later arrays from its heap, and a fragmented heap
    keeps what was freed: the peak of a phase-2 run of the budget tests grew 15 % above the budget
    that way. Numpy's large arrays are written once, so mapping them costs no measurable time
    (docs/scale.md); onnxruntime's runs take their memory from the shared arena."""
    if _RETURNING:
        return
    _RETURNING.append(True)
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (fixing it also stops its growth)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _page_size() -> int:
    import os
    return os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclasses.dataclass(frozen=True)
class RunSize:
    """Samples and time steps per run, and the estimated peak bytes of one such run."""

    samples: int
    steps: int
    bytes: int


class Budget:
    """A memory limit for one conversion; see the module docstring. ``records`` lists the run sizes
    chosen, by stage, for the report."""

    def __init__(self, limit: int | None = None):
        self.limit = int(limit) if limit else default_limit()
        return_freed_memory()
        self.baseline = resident_memory()
        self.kept = 0  # what earlier stages keep for the rest of the conversion (hold())
        self.records: dict[str, list[RunSize]] = {}

    def hold(self, nbytes: int) -> None:
        """Count ``nbytes`` that a stage keeps for the rest of the conversion (the statistics'
        histograms, say) against every later run."""
        self.kept += int(nbytes)

    def free(self, held: int = 0, margin: float = SAFETY) -> int:
        """Bytes a run may take: the limit less the baseline, what earlier stages keep and ``held``
        (what the stage keeps besides the run), less the safety ``margin`` of the estimate."""
        return int((self.limit - self.baseline - self.kept - held) / margin)

    def run_size(self, stage: str, fp: Footprint, samples: int, T: int = 1, max_batch: int | None = None,
                 held: int = 0, chunkable: bool = True, margin: float = SAFETY) -> RunSize:
        """The largest run of at most ``max_batch`` samples (and all ``T`` steps, or the largest
        divisor of T when one sample with all steps does not fit) within :meth:`free`.
        ``chunkable=False``: the run cannot be split over time steps (a bare SNN file, whose
        network is not at hand to be rebuilt for fewer steps). ``margin``: of the estimate
        (:data:`SNN_SAFETY` for runs of a whole SNN)."""
        free = self.free(held, margin)
        cap = max(1, min(samples, max_batch or samples))
        if fp.peak(1, T) <= free:
            per_sample = max(fp.peak(1, T) - fp.fixed, 1)
            size = RunSize(int(min(cap, max(1, (free - fp.fixed) // per_sample))), T, 0)
        else:
            steps = next((s for s in range(T - 1, 0, -1) if T % s == 0 and fp.peak(1, s) <= free), None)
            if steps is None or not chunkable:
                raise self._too_small(stage, fp, held, 1 if chunkable else T, T, margin)
            size = RunSize(1, steps, 0)
        size = dataclasses.replace(size, bytes=fp.peak(size.samples, size.steps))
        self.records.setdefault(stage, []).append(size)
        log.debug("%s: runs of %d sample(s) x %d step(s), about %s of %s free", stage, size.samples, size.steps,
                  format_size(size.bytes), format_size(free))
        return size

    def check(self, stage: str, fp: Footprint, held: int = 0) -> None:
        """Raise :class:`MemoryBudgetError` unless one sample at one step (the smallest run) fits."""
        if fp.peak(1, 1) > self.free(held):
            T = 2 if fp.dynamic.any() else 1
            raise self._too_small(stage, fp, held, 1, T)

    def _too_small(self, stage: str, fp: Footprint, held: int, steps: int, T: int,
                   margin: float = SAFETY) -> MemoryBudgetError:
        name, shape, per_step = fp.widest
        need = int(margin * fp.peak(1, steps)) + held + self.kept + self.baseline
        what = ("one sample" if T == 1 else "one sample at one time step" if steps == 1
                else f"one sample with its {steps} time steps")
        per = "per sample" if T == 1 else "per sample and step"
        parts = [f"{format_size(self.baseline)} in use when the conversion started"]
        if self.kept:
            parts.append(f"{format_size(self.kept)} kept by earlier stages")
        if held:
            parts.append(f"{format_size(held)} held by the stage besides its runs")
        if name:
            parts.append(f"its widest tensor, '{name}' {list(shape)}, takes {format_size(per_step)} {per}")
        return MemoryBudgetError(
            f"{stage}: {what} needs about {format_size(need)} ({'; '.join(parts)}), more than the memory "
            f"limit of {format_size(self.limit)}; raise --memory-limit to at least {format_size(need)}")

    def report(self) -> dict:
        """The limit, the baseline and, per stage, the run sizes chosen (JSON-ready)."""
        stages = {}
        for stage, sizes in self.records.items():
            samples = sorted({s.samples for s in sizes})
            steps = sorted({s.steps for s in sizes})
            stages[stage] = {"runs": len(sizes), "samples": [samples[0], samples[-1]],
                             "steps": [steps[0], steps[-1]], "estimated_peak": max(s.bytes for s in sizes)}
        return {"limit": self.limit, "baseline": self.baseline, "stages": stages}
