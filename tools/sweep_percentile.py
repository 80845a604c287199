"""Measure phase-1 SNN accuracy against the threshold percentile on the shipped models.

    python tools/sweep_percentile.py [--T 4 8 16 32] [--percentiles 99 99.9 ...] [--json]

Statistics are collected once per model; each (percentile, T) pair is rewritten and evaluated on
the shipped test split. The default percentile of onnx2snn is the one with the best mean accuracy
over models and T in this table (see docs/accuracy.md for the figures).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import model_path, shipped

import onnx2snn
from onnx2snn import Config
from onnx2snn.data import load_npz


def sweep(path: Path, percentiles, steps, config: Config) -> dict:
    prep = onnx2snn.prepare(path, path.with_suffix(".calib.npz"), config)  # statistics once
    test = load_npz(path.with_suffix(".test.npz"), prep.ann)
    rows = {}
    for q in percentiles:
        params = prep.phase1(config.replace(percentile=q))
        for T in steps:
            ev = onnx2snn.evaluate(prep.ann, prep.rewrite(params, T), test, config)
            rows[(q, T)] = ev.snn_accuracy
            ann_acc = ev.ann_accuracy
    return {"model": path.stem, "ann": ann_acc, "snn": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--percentiles", type=float, nargs="+",
                        default=[99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0])
    parser.add_argument("--models", nargs="*", help="model stems (default: all shipped)")
    parser.add_argument("--granularity", choices=["tensor", "channel"], default="channel")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = Config(batch_size=128, granularity=args.granularity)
    paths = [model_path(m) for m in shipped() if not args.models or m in args.models]
    results = [sweep(p, args.percentiles, args.T, config) for p in paths]
    print(f"{'model':<14} {'ANN':>6}  {'pct':>7}  " + "  ".join(f"T={T:<4}" for T in args.T))
    for r in results:
        for q in args.percentiles:
            cells = "  ".join(f"{100 * r['snn'][(q, T)]:6.2f}" for T in args.T)
            print(f"{r['model']:<14} {100 * r['ann']:6.2f}  {q:7g}  {cells}")
    means = {q: float(np.mean([r["snn"][(q, T)] for r in results for T in args.T])) for q in args.percentiles}
    best = max(means, key=means.get)
    print("mean SNN accuracy by percentile: " + ", ".join(f"{q:g}: {100 * m:.2f}" for q, m in means.items()))
    print(f"best percentile: {best:g}")
    if args.json:
        print(json.dumps({"results": [{**r, "snn": {f"{q:g}@T{T}": v for (q, T), v in r["snn"].items()}}
                                      for r in results], "mean": {f"{q:g}": m for q, m in means.items()},
                          "best": best}))


if __name__ == "__main__":
    main()
