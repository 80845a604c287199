"""How much data phase 2 needs: test accuracy by ``Config.phase2_samples`` and by search-set size.

    python tools/phase2_samples.py [--model fashion_cnn] [--samples 256 512 1024] [--T 2 4 8]
    python tools/phase2_samples.py --model digits_resnet --search-samples 64 128 256 --T 2 4 8
    python tools/phase2_samples.py --model digits_resnet --search-neurons 128 512 2048 --T 2 4 8

Converts the shipped model with the default method and each phase-2 sample count (statistics
always use the whole calibration split) and prints SNN test accuracy at each T; this is the
measurement behind the default of 512. ``--search-samples`` / ``--search-neurons`` instead vary
the search set (``Config.search_samples``: samples, at least; ``Config.search_neurons``: neurons
per layer, at most), whose size is most of phase 2's cost on small nets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import ROOT

import onnx2snn


def accuracies(base: Path, T: list[int], **config) -> tuple[float, str]:
    r = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", onnx2snn.Config(T=T[0], **config),
                         data=f"{base}.test.npz", sweep=T[1:])
    evals = {T[0]: r.evaluation, **r.sweep}
    return r.evaluation.ann_accuracy, "  ".join(f"T={t}: {100 * e.snn_accuracy:.2f}" for t, e in sorted(evals.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fashion_cnn")
    p.add_argument("--samples", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--T", nargs="+", type=int, default=[2, 4, 8])
    p.add_argument("--search-samples", nargs="+", type=int, help="vary Config.search_samples instead")
    p.add_argument("--search-neurons", nargs="+", type=int, help="vary Config.search_neurons instead")
    args = p.parse_args()
    base = ROOT / "models" / args.model
    runs = [("phase2_samples", n, {"phase2_samples": n}) for n in args.samples]
    if args.search_samples or args.search_neurons:
        runs = ([("search_samples", n, {"search_samples": n}) for n in args.search_samples or []]
                + [("search_neurons", n, {"search_neurons": n}) for n in args.search_neurons or []])
    for what, n, config in runs:
        ann, cells = accuracies(base, args.T, **config)
        print(f"{args.model} {what}={n}: ANN {100 * ann:.2f}  {cells}", flush=True)


if __name__ == "__main__":
    main()
