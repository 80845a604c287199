"""``convert()``: the stages in order, and nothing else.

    load/normalize -> plan (support check) -> statistics -> thresholds (phase 1)
    -> calibrate (phase 2) -> guard (phase 2 checked as a network) -> rewrite
    -> evaluate (ANN vs SNN on real inputs)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence

import onnx

from .calibration import calibrate, guard, quantize, targets, thresholds
from .calibration import stats as stats_mod
from .config import Config
from .errors import CalibrationError, UnsupportedModelError
from .data import Dataset, as_dataset
from .graph import load, weights
from .graph import plan as plan_mod
from .graph.weights import WeightStore, attach, store_of
from .progress import progress
from .simulation import evaluation
from .simulation.budget import Budget, format_size
from .simulation.footprint import footprint
from .simulation.runtime import expose
from .snn import params as params_mod
from .snn import constraints, rewrite

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Result:
    """Everything a conversion produced.

    ``ann`` and ``snn`` (and ``refitted``) are self-contained models, made when asked for; the
    conversion itself keeps them light (``light_ann``, ``light_snn``: their large initializers are
    held once, in ``weights``, see :mod:`onnx2snn.graph.weights`), which is what the report, the CLI and tools use
    to avoid copying a large model's weights."""

    light_ann: onnx.ModelProto  # the normalised input model
    light_snn: onnx.ModelProto
    plan: plan_mod.Plan
    params: dict[str, params_mod.LayerParams]
    stats: dict[str, stats_mod.LayerStats]
    fits: list[calibrate.LayerFit]  # phase 2, empty when it did not run
    evaluation: evaluation.Evaluation | None
    config: Config
    calib_samples: int
    seconds: float
    sweep: dict[int, evaluation.Evaluation] = dataclasses.field(default_factory=dict)  # by T
    light_refitted: onnx.ModelProto | None = None  # the ANN with refitted weights (--refit-weights)
    phase2_check: guard.Phase2Check | None = None  # phase 1 vs phase 2 on the calibration samples
    weights: WeightStore | None = None
    memory: dict = dataclasses.field(default_factory=dict)  # the budget and the run sizes chosen
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per stage
    evaluation_error: str | None = None  # the comparison on test data failed (the conversion stands)

    @property
    def ann(self) -> onnx.ModelProto:
        return attach(self.light_ann)

    def compact(self) -> None:
        """Drop the weights that none of this result's models refers to (the input model's before
        BatchNormalization was folded into them, say): for a caller that holds no other light
        model of the same store."""
        if self.weights is not None:
            self.weights.prune(*(m for m in (self.light_ann, self.light_snn, self.light_refitted) if m is not None))

    @property
    def snn(self) -> onnx.ModelProto:
        return attach(self.light_snn)

    @property
    def refitted(self) -> onnx.ModelProto | None:
        return attach(self.light_refitted) if self.light_refitted is not None else None


@dataclasses.dataclass
class Prepared:
    """A model loaded, normalised and planned, with its calibration statistics: what conversions
    of it at any T share. The public staged API: :func:`prepare` once, then :meth:`at` (or the
    stages one by one: :meth:`phase1`, :meth:`phase2`, :meth:`rewrite`) for each T or option;
    :func:`convert` is ``prepare`` + ``at`` + the comparison on test data."""

    ann: onnx.ModelProto  # light (weights in ``store``)
    plan: plan_mod.Plan
    calib: Dataset
    stats: dict[str, stats_mod.LayerStats]
    config: Config
    budget: Budget
    store: WeightStore
    clock: _Clock = dataclasses.field(default_factory=lambda: _Clock())
    data: Dataset | None = None  # test data, its labels checked (prepare's ``data``)

    def phase1(self, config: Config | None = None) -> dict[str, params_mod.LayerParams]:
        """Thresholds and initial potentials from the statistics (``config``'s method,
        percentile, granularity and alpha; the statistics do not depend on them)."""
        return thresholds.phase1(self.plan, self.stats, config or self.config)

    def phase2(self, params, config: Config | None = None,
               clock: _Clock | None = None) -> tuple[calibrate.Phase2, guard.Phase2Check]:
        """Phase 2 from the phase-1 ``params`` and its network check (which keeps phase 1 when
        phase 2 made the network worse on the calibration samples). ``clock``: where its seconds
        are counted (default: the conversion's stages)."""
        config, clock = config or self.config, clock or self.clock
        result = calibrate.phase2(self.ann, self.plan, params, self.calib, config, self.budget)
        clock.lap("phase 2")
        check = guard.check_phase2(self.ann, self.plan, params, result, self.calib, config, self.budget)
        clock.lap("network check")
        return result, check

    def rewrite(self, params, T: int, ann: onnx.ModelProto | None = None, metadata: dict | None = None,
                spiking_pool: bool = True) -> onnx.ModelProto:
        """The SNN of ``ann`` (default the prepared one) with ``params`` for ``T`` steps."""
        return rewrite.to_snn(ann or self.ann, self.plan, params, T, metadata, spiking_pool)

    def at(self, config: Config | None = None, clock: _Clock | None = None) -> Stage:
        """Phase 1, phase 2 (if ``config`` runs it) and its check, and the rewrite, at ``config.T``."""
        config, clock = config or self.config, clock or self.clock
        params = self.phase1(config)
        fits, work, check = [], self.ann, None
        if config.runs_phase2:
            result, check = self.phase2(params, config, clock)
            fits = result.fits
            if check.kept:
                params, work = result.params, result.model
        snn = self.rewrite(params, config.T, work, _metadata(config, work is not self.ann, fits))
        broken = constraints.violations(snn, config.profile)
        if broken:  # calibration must honour the target: a model that breaks it is not returned
            raise CalibrationError(f"the SNN breaks target '{config.target}' (please report this): "
                                   + "; ".join(broken))
        clock.lap("rewrite")
        return Stage(snn, params, fits, work if work is not self.ann else None, check, config)


@dataclasses.dataclass
class Stage:
    """One conversion of a :class:`Prepared` model: the SNN and what made it."""

    snn: onnx.ModelProto  # light
    params: dict[str, params_mod.LayerParams]
    fits: list[calibrate.LayerFit]
    refitted: onnx.ModelProto | None  # the ANN with refitted weights (refit_weights), else None
    check: guard.Phase2Check | None
    config: Config


def prepare(model: str | os.PathLike | onnx.ModelProto, calib: Dataset | dict | str | os.PathLike,
            config: Config | None = None, data: Dataset | dict | str | os.PathLike | None = None,
            score_output: str | None = None) -> Prepared:
    """Load, normalise and plan ``model`` (unsupported nodes refused here, all at once), check
    that the budget can hold the smallest run of every stage, and collect the statistics on
    ``calib`` (at most ``config.calib_samples`` of it). ``data``: test data whose labels are
    checked against ``score_output`` before any work."""
    config = config or Config()
    clock = _Clock()
    store = store_of(model) if isinstance(model, onnx.ModelProto) else None
    store = store or WeightStore()
    raw = model if isinstance(model, onnx.ModelProto) else load.load_model(model)
    ann = store.detach(load.normalize(store.detach(raw)))  # weights made by folding go to the store too
    del raw
    plan = plan_mod.make_plan(ann, config.rate_boundary)
    problems = constraints.up_front_problems(ann, config.profile)
    problems += quantize.quantize_problems(ann, plan) if config.profile.int8 else []
    if problems:  # every node the target cannot run, once each, before any work
        seen: set[str] = set()
        unique = [p for p in problems if not (p[0] in seen or seen.add(p[0]))]
        raise UnsupportedModelError(f"target '{config.target}' cannot run this model:", unique)
    calib = as_dataset(calib, ann, "calibration data").head(config.calib_samples)
    data = as_dataset(data, ann, "test data") if data is not None else None
    if data is not None:
        evaluation.check_data(ann, data, score_output)
    clock.lap("load")
    budget = Budget(config.memory_limit)
    _preflight(ann, plan, calib, config, budget)
    log.info("%d spiking layers; calibrating on %d samples; memory budget %s", len(plan.layers), len(calib),
             format_size(budget.limit))
    layer_stats = stats_mod.collect(ann, plan, calib, config, budget)
    clock.lap("statistics")
    return Prepared(ann, plan, calib, layer_stats, config, budget, store, clock, data)


def convert(model: str | os.PathLike | onnx.ModelProto, calib: Dataset | dict | str | os.PathLike,
            config: Config | None = None, data: Dataset | dict | str | os.PathLike | None = None,
            score_output: str | None = None, sweep: Sequence[int] = ()) -> Result:
    """Convert a ReLU ANN into an IF SNN for ``config.T`` steps and check it on ``data``.

    ``calib`` sets thresholds; ``data`` (optional) is where ANN and SNN are compared.
    Both may be a :class:`Dataset`, a dict of arrays (``x``/input names, ``y``) or an .npz path.
    ``sweep``: also convert (with the same statistics) and evaluate at each of these T.
    Every onnxruntime run is sized by the memory budget ``config.memory_limit`` (:mod:`onnx2snn.simulation.budget`).
    """
    start = time.perf_counter()
    config = config or Config()
    owned = not isinstance(model, onnx.ModelProto) or store_of(model) is None  # a caller's store: not pruned
    prep = prepare(model, calib, config, data, score_output)
    ann, plan, budget, data = prep.ann, prep.plan, prep.budget, prep.data
    stage = prep.at(config)
    check, swept, failed = None, {}, None
    if data is not None:
        try:  # the conversion is done: a failure from here on must not cost it (Result.evaluation_error)
            check = evaluation.evaluate(ann, stage.snn, data, config, score_output, budget,
                                        (stage.refitted or ann, plan, stage.params))
            prep.clock.lap("evaluation")
            for T in progress(sorted(set(sweep)), total=len(set(sweep)), desc="sweep"):
                at = prep.at(config.replace(T=T), _Clock())
                swept[T] = evaluation.evaluate(ann, at.snn, data, at.config, score_output, budget,
                                               (at.refitted or ann, plan, at.params))
            prep.clock.lap("sweep")
        except Exception as exc:  # noqa: BLE001 - reported with the converted model, not raised
            failed = f"{type(exc).__name__}: {exc}"
            log.warning("the comparison on the test data failed (%s); the converted model is kept", failed)
    result = Result(ann, stage.snn, plan, stage.params, prep.stats, stage.fits, check, config, len(prep.calib),
                    time.perf_counter() - start, swept, stage.refitted, stage.check, prep.store, budget.report(),
                    prep.clock.laps, failed)
    if owned:
        result.compact()
    return result


def _preflight(ann, plan, calib, config: Config, budget: Budget) -> None:
    """Refuse before any work a budget that cannot hold the smallest run of a stage: one sample
    of the statistics' ANN run with their histograms, one sample at one step of the SNN (phase 2's
    segments are parts of it) with what phase 2 holds besides."""
    outputs = [layer.output for layer in plan.layers]
    exposed = expose(ann, outputs)
    histograms = stats_mod.held_bytes(ann, plan, len(calib), config)
    budget.check("statistics", footprint(exposed, outputs), histograms + weights.weight_bytes(ann))
    snn = rewrite.to_snn(ann, plan, params_mod.unit_params(plan), config.T)
    phase2 = targets.held_bytes(ann, plan, min(len(calib), config.phase2_samples), config) if config.runs_phase2 else 0
    budget.check("SNN", footprint(snn, [o.name for o in ann.graph.output], config.T),
                 histograms + phase2 + weights.weight_bytes(ann))


class _Clock:
    """Seconds per stage, each lap from the previous one (stages that did not run are left out)."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(self.laps.get(stage, 0.0) + now - self._last, 3)
        self._last = now


def _metadata(config: Config, refitted: bool, fits=()) -> dict[str, str]:
    phase2 = "; phase 2: threshold/v(0) search, bias and potential correction" if config.runs_phase2 else ""
    return {
        "onnx2snn.method": config.method.value,
        "onnx2snn.thresholds": f"phase 1: percentile {config.percentile:g} of positive activations, "
                               f"{config.granularity.value}-wise{phase2}",
        "onnx2snn.initial_potential": f"{config.alpha:g} * threshold" + (
            " then calibrated per neuron" if config.runs_phase2 and config.profile.initial_potential else ""),
        "onnx2snn.target": config.target,
        "onnx2snn.weights": _weights_note(config, refitted, fits),
    }


def _weights_note(config: Config, refitted: bool, fits) -> str:
    """What happened to the user's weights, for the metadata (per layer for --fit-weights)."""
    if not refitted:
        return "unchanged"
    if config.profile.int8:
        return "int8 per output channel (target int8): W = sigma * q / c, q integer in [-127, 127]"
    if not config.fit_weights:
        return "refitted by least squares (--refit-weights)"
    changed = ", ".join(f"{f.name} {f.weights_change:.3g}" for f in fits if f.weights_change is not None)
    return f"fitted through the spiking neurons (--fit-weights); relative change ||W' - W|| / ||W||: {changed}"
