"""Exporter and operator coverage, measured: the table of the issue-4 note.

    python tests/coverage_table.py [--T 8 32] [--json]

A script beside the suite (not collected by pytest): it converts the suite's own one-node graphs
(``op_graphs.FAMILIES``), so it lives with them.

* Op families (``tests/op_graphs.FAMILIES``, each a small graph with that op between spiking
  layers, 64 random inputs): default conversion (dual-phase) at each T; reported: agreement of
  top-1 with the ANN and the max |SNN - ANN| relative to max |ANN|.
* Exporter models (``models/`` and ``models/exporters/``): ANN and SNN test accuracy (or R^2 for
  the regressor) and agreement at each T, default conversion.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from graphs import inputs, run_ort
from op_graphs import FAMILIES, input_shape

import onnx2snn

ROOT = Path(__file__).resolve().parent.parent

EXPORTERS = {  # model path (without .onnx) -> exporter
    "models/digits_cnn": "torch.onnx.export (TorchScript, opset 17)",
    "models/exporters/digits_cnn_dynamo": "torch.onnx.export(dynamo=True), external .onnx.data",
    "models/exporters/digits_resnet_dynamo": "torch.onnx.export(dynamo=True), residual + MaxPool",
    "models/exporters/digits_keras": "tf2onnx from Keras (NHWC)",
    "models/exporters/digits_sklearn": "skl2onnx MLPClassifier (ZipMap off)",
    "models/exporters/digits_sklearn_zipmap": "skl2onnx MLPClassifier (ZipMap on)",
    "models/exporters/diabetes_sklearn_regressor": "skl2onnx MLPRegressor",
}


def families(steps) -> list[dict]:
    rows = []
    for name, make in sorted(FAMILIES.items()):
        model = make()
        x = inputs(input_shape(model), n=64, seed=2)
        ann = run_ort(model, {"x": x})[0]
        row = {"family": name}
        for T in steps:
            snn = onnx2snn.convert(model, {"x": x}, onnx2snn.Config(T=T)).snn
            out = run_ort(snn, {"x": x})[0]
            row[f"agreement_T{T}"] = float(np.mean(out.argmax(1) == ann.argmax(1)))
            row[f"rel_error_T{T}"] = float(np.abs(out - ann).max() / np.abs(ann).max())
        rows.append(row)
        print(_fmt(row), file=sys.stderr, flush=True)
    return rows


def exporters(steps) -> list[dict]:
    rows = []
    for base, exporter in EXPORTERS.items():
        path = ROOT / f"{base}.onnx"
        calib, test = path.with_suffix(".calib.npz"), path.with_suffix(".test.npz")
        result = onnx2snn.convert(path, calib, onnx2snn.Config(T=steps[0]), data=test, sweep=steps[1:])
        evals = {steps[0]: result.evaluation, **result.sweep}
        row = {"model": base, "exporter": exporter}
        for T, e in evals.items():
            if e.task == "regression":
                row.update({"ann": e.ann_r2, f"snn_T{T}": e.snn_r2, "metric": "R^2"})
            else:
                row.update({"ann": e.ann_accuracy, f"snn_T{T}": e.snn_accuracy, f"agreement_T{T}": e.agreement,
                            "metric": "accuracy"})
        rows.append(row)
        print(_fmt(row), file=sys.stderr, flush=True)
    return rows


def _fmt(row: dict) -> str:
    return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", nargs="+", type=int, default=[8, 32])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = {"families": families(args.T), "exporters": exporters(args.T)}
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
