"""Ablation: ANN vs SNN accuracy for every shipped model, every method and T.

    python tools/ablation.py [--models ...] [--T 1 2 4 8 16 32] [--json] [--markdown]

Methods (all in onnx2snn, same statistics, same test split):
  max              Diehl et al. 2015: theta = max activation, v(0) = 0
  percentile       Rueckauer et al. 2017: theta = 99.9th percentile, v(0) = 0
  percentile-half  Deng & Gu 2021 / Bu et al. 2022: 99.9th percentile, v(0) = theta / 2
  ours-phase1      dual-phase, phase 1 only (percentile 98 per channel, v(0) = theta / 2)
  ours             dual-phase: phase 1 + phase 2 (the default of the onnx2snn command)
  ours+refit       ours with --refit-weights (least-squares refit of the weights, opt-in)
  ours+fit         ours with --fit-weights (weights fitted through the spiking neurons, opt-in)
  nir-portable     ours with --target nir-portable (v(0) = 0: the charge as a bias current)
  int8             ours with --target int8 (int8 weights, integer thresholds, potentials, biases)
  nir-reset-zero   ours with --target nir-reset-zero (neurons that reset to 0, v(0) = 0)
  speck            ours with --target speck (int8 on one scale per layer, one threshold per layer)
A model a target cannot run (max pooling for all but onnx) is listed as refused.
Also, for models with max-pooling, accuracy at large T with the naive per-step max over spikes
vs the spiking max-pool (``--pool``).
"""

from __future__ import annotations

import argparse
import json

from common import model_path, shipped

import onnx2snn
from onnx2snn import Config
from onnx2snn.data import load_npz
from onnx2snn.graph import load

METHODS = {
    "max": {"method": "max"},
    "percentile": {"method": "percentile"},
    "percentile-half": {"method": "percentile-half"},
    "ours-phase1": {"phase": 1},
    "ours": {},
    "ours+refit": {"refit_weights": True},
    "ours+fit": {"fit_weights": True},
    "nir-portable": {"target": "nir-portable"},
    "int8": {"target": "int8"},
    "nir-reset-zero": {"target": "nir-reset-zero"},
    "speck": {"target": "speck"},
}
DEFAULT_METHODS = ["max", "percentile", "percentile-half", "ours-phase1", "ours"]


def accuracies(name: str, steps: list[int], options: dict) -> tuple[float, dict[int, float]]:
    path = model_path(name)
    result = onnx2snn.convert(path, path.with_suffix(".calib.npz"), Config(T=steps[0], **options),
                              data=path.with_suffix(".test.npz"), sweep=steps[1:])
    evals = {steps[0]: result.evaluation, **result.sweep}
    return result.evaluation.ann_accuracy, {T: e.snn_accuracy for T, e in evals.items()}


def pool_convergence(name: str, steps=(16, 64, 256)) -> list[dict]:
    """Naive vs spiking max-pool at large T (phase 1, percentile-half thresholds)."""
    path = model_path(name)
    config = Config(method="percentile-half")
    prep = onnx2snn.prepare(path, path.with_suffix(".calib.npz"), config)
    params, test = prep.phase1(), load_npz(path.with_suffix(".test.npz"), prep.ann)
    rows = []
    for T in steps:
        naive, spiking = (onnx2snn.evaluate(prep.ann, prep.rewrite(params, T, spiking_pool=s), test, config)
                          for s in (False, True))
        rows.append({"model": name, "T": T, "ann": naive.ann_accuracy, "naive": naive.snn_accuracy,
                     "spiking": spiking.snn_accuracy})
    return rows


def has_maxpool(name: str) -> bool:
    model = load.load_model(model_path(name))
    return any(n.op_type in ("MaxPool", "GlobalMaxPool") for n in model.graph.node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--methods", nargs="*", default=DEFAULT_METHODS, choices=list(METHODS),
                        help="ours+refit: --refit-weights, ours+fit: --fit-weights (not in the default set)")
    parser.add_argument("--pool", action="store_true", help="also the max-pool convergence table")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    onnx2snn.progress.set_enabled(False)
    rows = []
    for name in args.models or shipped():
        for method in args.methods:
            try:
                ann, acc = accuracies(name, args.T, METHODS[method])
            except onnx2snn.UnsupportedModelError as exc:
                print(f"| {name} | {method} | refused: {str(exc).splitlines()[0]} |", flush=True)
                continue
            rows.append({"model": name, "method": method, "ann": ann, "snn": acc})
            cells = " | ".join(f"{100 * acc[T]:.2f}" for T in args.T)
            print(f"| {name} | {method} | {100 * ann:.2f} | {cells} |", flush=True)
    pools = [r for name in (args.models or shipped()) if args.pool and has_maxpool(name)
             for r in pool_convergence(name)]
    for r in pools:
        print(f"| {r['model']} | T={r['T']} | {100 * r['ann']:.2f} | naive {100 * r['naive']:.2f} | "
              f"spiking {100 * r['spiking']:.2f} |")
    if args.json:
        print(json.dumps({"T": args.T, "rows": rows, "pool": pools}))


if __name__ == "__main__":
    main()
