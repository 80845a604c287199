"""Stage 6b: the network-level check of phase 2.

Phase 2 minimises each layer's error ||rate - a||^2 given its real inputs; that is what the method
asks, but at very low T (T = 1, 2) a set of per-layer optima can still give a worse *network*. So the
converted SNN is checked as a whole on calibration samples against the ANN, with phase-1 and with
phase-2 parameters. Classifiers compare top-1 agreement with the ANN: phase 1 is kept only if its
agreement is higher by more than two standard errors of a proportion, 2 sqrt(p (1 - p) / n) with p
the mean agreement and n the samples -- a swing of a few samples does not undo phase 2, whose
per-layer errors are lower by construction. Other outputs compare the RMS difference of the
outputs. The report says which was kept and why.
It runs on phase 2's search set (the first 256 calibration samples, see :mod:`.targets`): two SNN
runs on those samples.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import onnx

from .config import Config
from .data import Dataset
from .evaluation import Evaluation, evaluate
from .plan import Plan
from .rewrite import to_snn
from .targets import search_samples
from .thresholds import LayerParams

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Phase2Check:
    """Agreement (or None for non-classifiers) and RMS output difference on the phase-2 samples."""

    agreement_phase1: float | None
    agreement_phase2: float | None
    rmse_phase1: float | None
    rmse_phase2: float | None
    kept: bool  # phase-2 parameters kept (False: reverted to phase 1)


def check_phase2(ann: onnx.ModelProto, work: onnx.ModelProto, plan: Plan, p1: dict[str, LayerParams],
                 p2: dict[str, LayerParams], calib: Dataset, config: Config) -> Phase2Check:
    """Compare the SNNs of (``ann``, ``p1``) and (``work``, ``p2``) on the search-set samples.

    ``work`` is ``ann`` or its copy with refitted weights (``--refit-weights``).
    """
    data = calib.head(search_samples(min(len(calib), config.phase2_samples)))
    one = evaluate(ann, to_snn(ann, plan, p1, config.T), data, config)
    two = evaluate(ann, to_snn(work, plan, p2, config.T), data, config)
    kept = not _better(one, two, len(data))
    if not kept:
        log.warning("phase 2 reverted: on the calibration samples phase 1 agrees better with the ANN "
                    "(%s vs %s) at T=%d", one.agreement, two.agreement, config.T)
    return Phase2Check(one.agreement, two.agreement, one.output_rmse, two.output_rmse, kept)


def _better(a: Evaluation, b: Evaluation, n: int) -> bool:
    """Whether ``a`` reproduces the ANN clearly better than ``b`` on ``n`` samples."""
    if a.task == "classification" and a.agreement is not None and b.agreement is not None:
        p = (a.agreement + b.agreement) / 2
        return a.agreement - b.agreement > 2 * math.sqrt(max(p * (1 - p), 1e-12) / n)
    return a.output_rmse is not None and b.output_rmse is not None and a.output_rmse < b.output_rmse
