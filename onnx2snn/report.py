"""Reports of a conversion: a JSON-ready summary and a human-readable table."""

from __future__ import annotations

import dataclasses
import logging

from . import energy
from ._version import __version__
from .pipeline import Result
from .simulation.budget import peak_rss

log = logging.getLogger(__name__)


def summary(result: Result, model: str, output: str | None) -> dict:
    """The conversion as one JSON-serialisable dict (the CLI's ``--json`` object). A part that
    cannot be computed (the energy estimate, say, for a graph whose shapes are unknown) is None,
    with the reason in ``warnings``; the summary itself never fails for it."""
    warnings: list[str] = []
    if result.evaluation_error:
        warnings.append(f"comparison on the test data failed: {result.evaluation_error}")
    out = _core(result, model, output)
    out["energy"] = guarded("energy estimate", warnings, _energy, result)
    out["warnings"] = warnings
    return out


def guarded(what: str, warnings: list[str], fn, *args):
    """``fn(*args)``, or None with a warning (logged and added to ``warnings``) when it raises: a
    report part must never cost a finished conversion."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure of a report part is reported, not raised
        message = f"{what} unavailable: {type(exc).__name__}: {exc}"
        log.warning("%s", message)
        warnings.append(message)
        return None


def _core(result: Result, model: str, output: str | None) -> dict:
    ev = result.evaluation
    rates = ev.firing_rates if ev else {}
    fits = {fit.name: fit for fit in result.fits}
    layers = []
    for layer in result.plan.layers:
        p = result.params[layer.name]
        entry = {"name": layer.name, "op": layer.op_type, "threshold": p.summary(),
                 "threshold_source": p.source, "firing_rate": rates.get(layer.name), "dead": p.dead}
        if p.threshold.size > 1:
            entry["threshold_per_channel"] = [float(v) for v in p.threshold.reshape(-1)]
        if layer.name in fits:
            fit = fits[layer.name]
            entry.update(mse_phase1=fit.mse_phase1, mse_phase2=fit.mse_final, weights_refit=fit.refit,
                         weights_change=fit.weights_change)
        layers.append(entry)
    return {
        "model": model,
        "output": output,
        "T": result.config.T,
        "ann_accuracy": ev.ann_accuracy if ev else None,
        "snn_accuracy": ev.snn_accuracy if ev else None,
        "accuracy_loss": ev.accuracy_loss if ev else None,
        "agreement": ev.agreement if ev else None,
        "task": ev.task if ev else None,
        "ann_r2": ev.ann_r2 if ev else None,
        "snn_r2": ev.snn_r2 if ev else None,
        "output_rmse": ev.output_rmse if ev else None,
        "data": ev.data if ev else None,
        "samples": ev.samples if ev else 0,
        "score_output": ev.score_output if ev else None,
        "calibration_samples": result.calib_samples,
        "method": result.config.method.value,
        "target": result.config.target,
        "phase": 2 if result.config.runs_phase2 else 1,
        "percentile": result.config.percentile,
        "granularity": result.config.granularity.value,
        "readout_activations": list(result.plan.readout_activations),
        "rate_boundaries": list(result.plan.boundaries),
        "weights_refitted": [fit.name for fit in result.fits if fit.refit] if _kept(result) else [],
        "weights_fitted": ({fit.name: fit.weights_change for fit in result.fits if fit.weights_change is not None}
                           if _kept(result) else {}),
        "phase2_check": dataclasses.asdict(result.phase2_check) if result.phase2_check else None,
        "layers": layers,
        "sweep": [{"T": T, "snn_accuracy": e.snn_accuracy, "agreement": e.agreement, "snn_r2": e.snn_r2,
                   "output_rmse": e.output_rmse}
                  for T, e in sorted(result.sweep.items())],
        "output_rel_error": ev.output_rel_error if ev else None,
        "output_cosine": ev.output_cosine if ev else None,
        "ann_output_spread": ev.ann_output_spread if ev else None,
        "memory": {**result.memory, "peak_rss": peak_rss()},
        "timings": result.timings,
        "seconds": round(result.seconds, 3),
        "evaluation_error": result.evaluation_error,
        "version": __version__,
    }


def _kept(result: Result) -> bool:
    return result.phase2_check is None or result.phase2_check.kept


def _energy(result: Result) -> dict | None:
    """MACs, SOPs from the measured spikes, and the energy estimate (see :mod:`onnx2snn.energy`)."""
    if result.evaluation is None:
        return None
    e = energy.estimate(result.light_ann, result.plan, result.evaluation.firing_rates, result.config.T)
    return {"ann_macs": e.ann_macs, "snn_macs": e.snn_macs, "snn_sops": e.snn_sops, "ann_uj": e.ann_uj,
            "snn_uj": e.snn_uj, "sops_by_layer": e.sops_by_layer, "pj_per_mac": energy.PJ_PER_MAC,
            "pj_per_ac": energy.PJ_PER_AC}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _sweep_cell(r: dict) -> str:
    if r["snn_accuracy"] is not None:
        return f"{100 * r['snn_accuracy']:.2f} %"
    if r["agreement"] is not None:
        return f"agreement {100 * r['agreement']:.2f} %"
    return f"R^2 {r['snn_r2']:.4f}" if r["snn_r2"] is not None else f"RMS diff {r['output_rmse']:.4g}"


def _quality_lines(s: dict) -> list[str]:
    lines = []
    if s["task"] == "output":
        return [f"  SNN output vs ANN output: relative L2 error {s['output_rel_error']:.4g}, cosine "
                f"{s['output_cosine']:.4f}, RMS difference {s['output_rmse']:.4g}"]
    if s["task"] == "regression":
        if s["ann_r2"] is not None:
            lines.append(f"  ANN R^2  {s['ann_r2']:.4f}   SNN R^2  {s['snn_r2']:.4f}")
        lines.append(f"  RMS difference SNN - ANN output: {s['output_rmse']:.4g}")
        return lines
    if s["ann_accuracy"] is not None:
        lines.append(f"  ANN accuracy  {100 * s['ann_accuracy']:6.2f} %")
        lines.append(f"  SNN accuracy  {100 * s['snn_accuracy']:6.2f} %   "
                     f"(loss {100 * s['accuracy_loss']:+.2f} points)")
    else:
        lines.append("  accuracy: skipped (the data has no labels 'y')")
    lines.append(f"  agreement     {100 * s['agreement']:6.2f} %   (SNN top-1 == ANN top-1)")
    return lines


def format_text(s: dict) -> str:
    """A table for people: accuracies, per-layer thresholds and firing rates, the output file."""
    lines = [f"onnx2snn {s['version']}: {s['model']} -> SNN with T={s['T']} "
             f"({len(s['layers'])} spiking layers, method {s['method']}, phase {s['phase']}, "
             + (f"target {s['target']}, " if s.get("target", "onnx") != "onnx" else "")
             + f"{s['seconds']:.1f} s)"]
    if s["samples"]:
        lines.append(f"evaluated on {s['samples']} samples of {s['data']}")
        lines += _quality_lines(s)
    width = max([len("layer")] + [len(layer["name"]) for layer in s["layers"]])
    fitted = any("mse_phase2" in layer for layer in s["layers"])
    mse = f"  {'MSE phase 1 -> 2':>20}" if fitted else ""
    lines.append(f"  {'layer':<{width}}  {'threshold':>10}  {'firing rate':>11}{mse}  threshold source")
    for layer in s["layers"]:
        rate = "-" if layer["firing_rate"] is None else f"{layer['firing_rate']:.4f}"
        note = " (never fired on calibration data)" if layer["dead"] else ""
        mse = f"  {layer['mse_phase1']:>9.4g} -> {layer['mse_phase2']:<7.4g}" if fitted else ""
        lines.append(f"  {layer['name']:<{width}}  {layer['threshold']:>10.4g}  {rate:>11}{mse}  "
                     f"{layer['threshold_source']}{note}")
    if s["sweep"]:
        lines.append("  sweep:  " + "  ".join(f"T={r['T']}: {_sweep_cell(r)}" for r in s["sweep"]))
    if s["readout_activations"]:
        lines.append(f"  analog readout activations: {', '.join(s['readout_activations'])}")
    if s.get("rate_boundaries"):
        lines.append(f"  rate boundaries (computed on rates, not event-driven; later layers start after T steps): "
                     f"{', '.join(s['rate_boundaries'])}")
    check = s.get("phase2_check")
    if check and not check["kept"]:
        lines.append(f"  NOTE: phase 2 was reverted: on the calibration samples phase 1 agreed better with the ANN "
                     f"({_pct(check['agreement_phase1'])} vs {_pct(check['agreement_phase2'])})")
    if s["weights_refitted"]:
        lines.append(f"  NOTE: the weights feeding {len(s['weights_refitted'])} layer(s) were refitted "
                     f"(--refit-weights): {', '.join(s['weights_refitted'])}")
    if s.get("weights_fitted"):
        changes = ", ".join(f"{name} {change:.3g}" for name, change in s["weights_fitted"].items())
        lines.append(f"  NOTE: the weights feeding {len(s['weights_fitted'])} layer(s) were fitted through the "
                     f"spiking neurons (--fit-weights); relative change ||W' - W|| / ||W||: {changes}")
    for warning in s.get("warnings", []):
        lines.append(f"  WARNING: {warning}")
    if s.get("energy"):
        e = s["energy"]
        lines.append(f"  per sample: ANN {e['ann_macs']:.3g} MACs; SNN {e['snn_macs']:.3g} MACs + {e['snn_sops']:.3g} "
                     f"SOPs -> energy estimate {e['ann_uj']:.3g} uJ vs {e['snn_uj']:.3g} uJ (45 nm)")
    if s["output"]:
        lines.append(f"SNN written to {s['output']}")
    if s.get("nir"):
        lines.append(f"NIR graph written to {s['nir']}")
    if s.get("report"):
        lines.append(f"report written to {s['report']}")
    return "\n".join(lines)
