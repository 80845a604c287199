"""How many calibration samples phase 2 needs: test accuracy by ``Config.phase2_samples``.

    python tools/phase2_samples.py [--model fashion_cnn] [--samples 256 512 1024] [--T 2 4 8]

Converts the shipped model with the default method and each phase-2 sample count (statistics
always use the whole calibration split) and prints SNN test accuracy at each T; this is the
measurement behind the default of 512.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnx2snn  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fashion_cnn")
    p.add_argument("--samples", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--T", nargs="+", type=int, default=[2, 4, 8])
    args = p.parse_args()
    base = ROOT / "models" / args.model
    for n in args.samples:
        r = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", onnx2snn.Config(T=args.T[0], phase2_samples=n),
                             data=f"{base}.test.npz", sweep=args.T[1:])
        evals = {args.T[0]: r.evaluation, **r.sweep}
        cells = "  ".join(f"T={T}: {100 * e.snn_accuracy:.2f}" for T, e in sorted(evals.items()))
        print(f"{args.model} phase2_samples={n}: ANN {100 * r.evaluation.ann_accuracy:.2f}  {cells}", flush=True)


if __name__ == "__main__":
    main()
