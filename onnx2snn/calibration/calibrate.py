"""Stage 6, phase 2 (error optimisation): fit every spiking layer to the SNN's own inputs.

Layer by layer in topological order, the earlier layers already calibrated and their spike trains
cached, with a_l the ANN activation and r_l = theta * (spike count) / T the SNN rate of layer l:

1. **Search** (the search set of :mod:`.targets`: up to 256 samples or a tenth, up to 2,048 neurons):
   threshold theta = f * theta_1 and v(0) = alpha * theta minimising sum (r_l - a_l)^2 over a grid
   of f, then of alpha (per layer, or per channel).
2. **Measure**: E[r] per neuron with the searched parameters on all phase-2 samples; their spikes
   are cached (kept as the layer's if step 3 is rejected).
3. **Correction**: per-channel bias current ``b_c = E_c[a] - E_c[r]`` added at every step, and
   per-neuron potential ``v0 += T * (E[a] - E[r] - b_c)`` for what the channel bias leaves
   (Li et al. 2021), kept only if it lowers the error on the search set.
4. **Commit**: if the correction is kept, the layer's spikes with the corrected parameters replace
   the cached ones (bit-packed) as later layers' input.

Because each layer is fitted to the spikes it will really receive, errors of earlier layers are
compensated instead of accumulated. No change of the user's weights unless asked for:
``--refit-weights`` (:mod:`.refit`, before the layer's search) or ``--fit-weights`` (:mod:`.fit`,
after it, then steps 1-4 again, kept when the error on the samples held back from the fit drops).
Steps 1-4 for one layer are :class:`.layer_fit.LayerFitter`.

Memory: every pass runs over blocks of samples (and of time steps, when one sample's T steps do not
fit), sized by the memory budget (:mod:`onnx2snn.simulation.budget`) from the layer's segment and the IF kernel; the
spike trains are held in memory while a quarter of the budget allows, else on disk
(:class:`.spikes.SpikeStore`). A layer's currents are kept while they fit in
``currents.CURRENT_CACHE_BYTES`` and another quarter of the budget; beyond that they are recomputed for each
pass (search prefix, measure, commit). Results do not depend on the blocks. Cost per layer:
about one segment run, one IF simulation of the calibration set (:mod:`.if_kernel`) plus one more
if the correction is kept, and 13 IF simulations of the search set (8 scales, 4 alphas -- the
fifth is the best scale itself --, the correction), each returning only its per-neuron squared
error, a grid's candidates side by side on the worker threads; phase 1's and the searched errors
come from the grid.
At the end the network's output on the search set is read from the cached spikes, for the
network-level check (:mod:`.guard`). Phase 2 uses the first ``config.phase2_samples`` samples.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx

from ..config import Config
from ..data import Dataset
from ..graph import load
from ..graph.cut import GraphIndex, segment_inputs
from ..graph.plan import Plan
from ..progress import progress
from ..simulation.budget import Budget
from ..simulation.evaluation import score_output
from ..simulation.footprint import footprint
from ..simulation.runtime import release_memory
from ..snn.params import LayerParams
from ..snn.rewrite import build
from .currents import LayerRuns
from .fit import fit_weights
from .if_kernel import IFKernel
from .layer_fit import LayerFit, LayerFitter
from .quantize import integer_params, quantize_layer, quantize_readout
from .refit import refit_layer, weighted_source
from .segments import Segment, block_feeds, blocks
from .spikes import SpikeStore
from .targets import ann_targets, search_work

__all__ = ["LayerFit", "Phase2", "phase2"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Phase2:
    """Phase 2's result: parameters per layer, what was done per layer, the ANN to rewrite
    (``ann`` itself, or a copy with refitted weights), and on the search set the score output
    ``score`` of the ANN and of the calibrated SNN (from the stored spikes, no extra SNN run)."""

    params: dict[str, LayerParams]
    fits: list[LayerFit]
    model: onnx.ModelProto
    score: str
    ann_scores: np.ndarray
    snn_scores: np.ndarray


def phase2(ann: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], calib: Dataset,
           config: Config, budget: Budget | None = None) -> Phase2:
    """Calibrated parameters for every layer of ``plan`` (see module docstring)."""
    budget = budget or Budget(config.memory_limit)
    calib = calib.head(config.phase2_samples)
    work, (snn, _) = ann, build(ann, plan, params, config.T)
    score = score_output(ann)
    targets = ann_targets(ann, plan, calib, config, score=score, budget=budget)
    names = [layer.output for layer in plan.layers]
    index = GraphIndex(snn)
    needs = [segment_inputs(index, layer.current, set(names[:i])) for i, layer in enumerate(plan.layers)]
    needs.append(segment_inputs(index, score, set(names)))  # the score output, read at the end
    last_use = {n: max([i for i, inputs in enumerate(needs) if n in inputs], default=-1) for n in names}
    search = [t.sample.shape for t in targets.layers.values()]
    held = targets.nbytes + search_work(max(r for r, _ in search), max(n for _, n in search), config)
    store = SpikeStore(len(calib), config.T, ram=max(0, budget.free(held)) // 4)
    fitted, fits = dict(params), []
    shapes = load.sample_shapes(ann) if config.profile.int8 else {}  # int8: what a Flatten spreads
    with IFKernel(config.T, config) as kernel:
        try:
            for i, layer in enumerate(progress(plan.layers, total=len(plan.layers), desc="phase 2")):
                refit = None
                if config.refit_weights:
                    refit = refit_layer(work, ann, snn, layer.current, plan.time_major, set(names[:i]), calib,
                                        store, config, budget, held)
                    if refit is not None:
                        work, snn = refit, build(refit, plan, params, config.T)[0]
                        index = GraphIndex(snn)
                if config.profile.int8:  # quantised now that the thresholds before it are final
                    work, sigma, layer_bias = quantize_layer(work, plan, layer, fitted, config.profile, shapes)
                    snn = build(work, plan, params, config.T)[0]
                    index = GraphIndex(snn)
                store.create(layer.output, targets.layer(layer.name).shape, np.float32)
                runs = LayerRuns(work, plan, params, index, layer, set(names[:i]), calib, store, config, budget,
                                  held)
                fitter = LayerFitter(runs, targets, layer.name, config, kernel)
                fitted[layer.name], fit = fitter.fit(params[layer.name], layer.output)
                if config.fit_weights:
                    step = _fit_layer_weights(work, ann, plan, params, snn, layer, set(names[:i]), calib, store, config,
                                              budget, held, targets, kernel, fitter, fitted[layer.name], fit)
                    if step is not None:
                        work, snn, fitted[layer.name], fit = step
                        index = GraphIndex(snn)
                if config.profile.int8:  # theta, v(0), bias on the layer's integer grid; its spikes with them
                    fitted[layer.name] = integer_params(fitted[layer.name], sigma, targets.layer(layer.name).shape,
                                                        config.profile, layer_bias)
                    fitter._commit(layer.output, fitted[layer.name])
                fits.append(dataclasses.replace(fit, refit=refit is not None))
                log.debug("phase 2 %s: mse %.4g -> %.4g", layer.name, fit.mse_phase1, fit.mse_final)
                del runs, fitter
                _release(store, kernel, [n for n in names[: i + 1] if last_use[n] <= i])
            if config.profile.int8:
                work = quantize_readout(work, plan, fitted, {weighted_source(work, x.current).name
                                                             for x in plan.layers}, config.profile, shapes)
                index = GraphIndex(build(work, plan, params, config.T)[0])
            rows = len(targets.scores)
            snn_scores = _search_scores(index, score, set(names), calib.head(rows), store, config, budget, held)
        finally:
            store.close()
    return Phase2(fitted, fits, work, score, targets.scores, snn_scores)


def _release(store: SpikeStore, kernel: IFKernel, done: list[str]) -> None:
    """After a layer: drop the spike trains no later segment reads, and return the memory held."""
    for name in done:
        store.drop(name)
    store.release()
    kernel.release()
    release_memory()


def _fit_layer_weights(work, ann, plan, params, snn, layer, available, calib, store, config, budget, held, targets,  # noqa: PLR0913
                       kernel, fitter, p, fit):
    """Fit the layer's weights through its neurons (:mod:`.fit`), calibrate the layer again on the
    new SNN and keep that only when its rate error on the samples held back from the fit is
    lower: (model, snn, params, fit) then, else None (the layer's spikes with ``p`` are stored
    again)."""
    found = fit_weights(work, ann, snn, layer, targets.layer(layer.name).shape, p, available, calib, store, config,
                        budget, held)
    if found is None:
        return None
    new_snn = build(found.model, plan, params, config.T)[0]
    held += found.held_back.cols.nbytes + found.held_back.mean.nbytes
    runs = LayerRuns(found.model, plan, params, GraphIndex(new_snn), layer, available, calib, store, config, budget,
                     held)
    new_fitter = LayerFitter(runs, targets, layer.name, config, kernel)
    p_new, fit_new = new_fitter.fit(params[layer.name], layer.output)
    before, after = found.held_before, found.held_back_error(p_new)
    log.debug("weight fit %s: held-back %.4g -> %.4g after the fit, %.4g calibrated again", layer.name, before,
              found.held_after, after)
    if after < before:
        return found.model, new_snn, p_new, dataclasses.replace(fit_new, weights_change=found.change)
    fitter._commit(layer.output, p)  # the layer's spikes as they were
    return None


def _search_scores(snn, score: str, available: set[str], data: Dataset, store: SpikeStore, config: Config,
                   budget: Budget, held: int) -> np.ndarray:
    """The calibrated SNN's output on ``data`` (the search samples), computed from the stored spikes.
    Its runs hold all T steps (the readout sums them)."""
    segment = Segment(snn, score, available, config)
    spikes = frozenset(n for n in segment.inputs if n in store)
    fp = footprint(segment.model, [score], config.T, spikes, {n: store.shape(n) for n in spikes})
    size = budget.run_size("phase 2 (network output)", fp, len(data), config.T, config.batch_size,
                           held + store.ram_bytes, chunkable=False)
    parts = []
    for block in blocks(len(data), config.T, size.samples, config.T):
        feeds = block_feeds(data, block, store, segment.inputs)
        parts.append(segment.run(feeds))
    return np.concatenate(parts)
