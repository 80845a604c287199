"""Stage 6b: the network-level check of phase 2.

Phase 2 minimises each layer's error ||rate - a||^2 given its real inputs; that is what the method
asks, but at very low T (T = 1, 2) a set of per-layer optima can still give a worse *network*. So the
converted SNN is checked as a whole on calibration samples against the ANN, with phase-1 and with
phase-2 parameters. Classifiers compare top-1 agreement with the ANN: phase 1 is kept only if its
agreement is higher by more than two standard errors of a proportion, 2 sqrt(p (1 - p) / n) with p
the mean agreement and n the samples -- a swing of a few samples does not undo phase 2, whose
per-layer errors are lower by construction. Other outputs compare the RMS difference of the
outputs. The report says which was kept and why.
It runs on phase 2's search set (the first 256 calibration samples, see :mod:`.targets`): phase 2
brings its own SNN's and the ANN's outputs there, so the check costs one phase-1 SNN run on them --
cut short as soon as phase 1, even agreeing on every sample still to come, could no longer be clearly
better (then ``agreement_phase1`` is not known and is None), and skipped when no agreement of phase 1
could be clearly better: ``a1 - a2 - 2 sqrt(p (1 - p) / n)``
grows with a1 (for p > 1/2), so if even a1 = 1 is not clearly better than phase 2's a2 (on 256
samples: at most one disagreement with the ANN), phase 2 is kept without running phase 1.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import onnx

from ..config import Config
from ..data import Dataset
from ..graph.plan import Plan
from ..simulation.budget import Budget
from ..simulation.evaluation import Evaluation, compare
from ..simulation.stepwise import run_snn
from ..snn.params import LayerParams
from ..snn.rewrite import to_snn
from .calibrate import Phase2

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Phase2Check:
    """Agreement (or None for non-classifiers) and RMS output difference on the phase-2 samples."""

    agreement_phase1: float | None  # None when phase 1 was not run, or stopped early (it could not have won)
    agreement_phase2: float | None
    rmse_phase1: float | None
    rmse_phase2: float | None
    kept: bool  # phase-2 parameters kept (False: reverted to phase 1)


def check_phase2(ann: onnx.ModelProto, plan: Plan, p1: dict[str, LayerParams], result: Phase2,
                 calib: Dataset, config: Config, budget: Budget | None = None) -> Phase2Check:
    """Compare the phase-1 SNN of ``ann`` with phase 2's ``result`` on the search-set samples.

    Phase 2 already carries its SNN's and the ANN's scores on those samples (computed from its
    cached spikes); only the phase-1 SNN is run here, and not at all if it could not win.
    """
    data = calib.head(len(result.ann_scores))
    two = compare(data, result.score, result.ann_scores, result.snn_scores)
    if config.profile.int8:  # phase 1 runs float weights: no integer model to fall back to
        log.debug("network check: target %s keeps phase 2 (phase 1 has no integer form)", config.target)
        return Phase2Check(None, two.agreement, None, two.output_rmse, True)
    if _unbeatable(two, len(data)):
        log.debug("network check: phase 2 agrees with the ANN on %d of %d samples; phase 1 could not do "
                  "clearly better, so it is not run", round(two.agreement * len(data)), len(data))
        return Phase2Check(None, two.agreement, None, two.output_rmse, True)
    budget = budget or Budget(config.memory_limit)
    stop = _hopeless(two, result, len(data)) if two.task == "classification" and two.agreement is not None else None
    snn1 = run_snn(to_snn(ann, plan, p1, config.T), data, config, [result.score], budget, "network check",
                   source=(ann, plan, p1), stop=stop).outputs[result.score]
    if len(snn1) < len(data):
        log.debug("network check: phase 1 stopped after %d of %d samples, when it could no longer agree with "
                  "the ANN clearly better than phase 2", len(snn1), len(data))
        return Phase2Check(None, two.agreement, None, two.output_rmse, True)
    one = compare(data, result.score, result.ann_scores, snn1)
    kept = not _better(one, two, len(data))
    if not kept:
        log.warning("phase 2 reverted: on the calibration samples phase 1 agrees better with the ANN "
                    "(%s vs %s) at T=%d", one.agreement, two.agreement, config.T)
    return Phase2Check(one.agreement, two.agreement, one.output_rmse, two.output_rmse, kept)


def _hopeless(two: Evaluation, result: Phase2, n: int):
    """``stop`` for the phase-1 run: True once phase 1, even agreeing with the ANN on every sample
    still to come, could not be clearly better than phase 2 (the test grows with its agreement,
    see the module docstring), so the decision is the one the whole run would give."""
    ann_top = np.asarray(result.ann_scores).reshape(n, -1).argmax(axis=1)

    def stop(outputs: dict) -> bool:
        done = next(iter(outputs.values()))
        agree = int(np.sum(done.reshape(len(done), -1).argmax(axis=1) == ann_top[:len(done)]))
        best = (agree + n - len(done)) / n
        return len(done) < n and not _better(dataclasses.replace(two, agreement=best), two, n)
    return stop


def _unbeatable(b: Evaluation, n: int) -> bool:
    """Whether no phase-1 agreement (not even 1.0) would be clearly better than ``b``'s (classifiers)."""
    if b.task != "classification" or b.agreement is None:
        return False
    return not _better(dataclasses.replace(b, agreement=1.0), b, n)


def _better(a: Evaluation, b: Evaluation, n: int) -> bool:
    """Whether ``a`` reproduces the ANN clearly better than ``b`` on ``n`` samples."""
    if a.task == "classification" and a.agreement is not None and b.agreement is not None:
        p = (a.agreement + b.agreement) / 2
        return a.agreement - b.agreement > 2 * math.sqrt(max(p * (1 - p), 1e-12) / n)
    return a.output_rmse is not None and b.output_rmse is not None and a.output_rmse < b.output_rmse
