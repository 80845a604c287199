"""Real-size networks: torchvision's ReLU classifiers at their real input size, converted by the CLI.

    python tools/bench_scale.py [--models resnet18 vgg16_bn ...] [--T 8 32] [--exporters torchscript dynamo]
                                [--calib 256] [--test 64] [--memory-limit 2GiB] [--work out/scale] [--json]

For each model (seeded random weights: no ImageNet weights exist offline), exporter and T, one child
process runs ``python -m onnx2snn MODEL.onnx -T T --calib cal.npz --data test.npz --json`` with every
other setting at its default (plus ``--memory-limit`` when given) and reports: exit status, wall
time, seconds per stage (the JSON's ``timings``), peak RSS of the child (
measured by tools/peak_rss.py), the run sizes the budget chose, and output fidelity of
the SNN against the ANN on the test images -- relative L2 error and mean cosine of the logits. With
random weights some networks answer the same whatever the input (their ``ann_output_spread``, the
spread of the logits across inputs relative to their size, is near 0); fidelity is only meaningful
where the spread is not (``--min-spread``, default 1e-3), and the table says so.

Inputs are crops of real photos: scikit-learn's two sample images and, when scikit-image is
installed, the colour photos of ``skimage.data``; random positions, scales and flips (seeded), with
ImageNet normalisation. Exporters: ``torchscript`` (``torch.onnx.export(dynamo=False,
opset_version=17)``, dynamic batch axis) and ``dynamo`` (``dynamo=True``); a model one exporter
cannot export is listed as such. Dev-only: torch 2.13.0 and torchvision 0.28.0 (``pip install -e
'.[train]'`` plus ``pip install torchvision==0.28.0 scikit-image``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from peak_rss import measure  # tools/: the script's folder is on sys.path
from photos import crops, photos

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("resnet18", "resnet50", "vgg16_bn", "mobilenet_v2", "squeezenet1_1", "googlenet", "densenet121",
          "shufflenet_v2_x1_0", "mnasnet1_0", "regnet_x_400mf", "alexnet", "inception_v3")


def import_torchvision():
    """torchvision's models with the local CPU build of torch. The 0.28.0 wheel's compiled operators
    do not load against that build, and the import then fails where it registers shape functions
    for two of them (``torchvision::nms``, ``qnms``) that were never declared. Declaring their
    schemas first (no kernels: detection ops stay unusable) is all the classifiers need."""
    import torch
    declared = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        try:
            declared.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # the compiled operators did load: nothing to declare
    import_torchvision.library = declared  # the declarations live as long as the library object
    import torchvision.models
    return torchvision.models


def input_size(name: str) -> int:
    return 299 if name == "inception_v3" else 224


def export(name: str, exporter: str, path: Path) -> str | None:
    """Export torchvision's ``name`` (seed 0) to ``path``; returns why it failed, or None."""
    import torch
    models = import_torchvision()
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    net = getattr(models, name)(weights=None, **kwargs).eval()
    x = torch.randn(2, 3, input_size(name), input_size(name))
    try:
        if exporter == "torchscript":
            torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
        else:
            batch = torch.export.Dim("N", min=1)
            torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=18, input_names=["x"],
                              output_names=["logits"], dynamic_shapes={"x": {0: batch}}, external_data=False)
    except Exception as exc:  # noqa: BLE001 - an exporter's failure is a result of the benchmark
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return None


def convert(model: Path, T: int, cal: Path, test: Path, limit: str | None, out: Path) -> dict:
    """One CLI conversion in a child process: exit status, wall time, peak RSS and its JSON."""
    cmd = [sys.executable, "-m", "onnx2snn", str(model), "-T", str(T), "--calib", str(cal), "--data", str(test),
           "--json", "-q", "-o", str(out)] + (["--memory-limit", limit] if limit else [])
    proc, wall, peak = measure(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    result = {"exit": code, "wall_s": round(wall, 1), "error": None, "report": None,
              "peak_rss_gib": round(peak / 2 ** 30, 2)}
    if code == 0:
        result["report"] = json.loads(stdout)
    else:
        result["error"] = stderr.decode(errors="replace").strip().splitlines()[-1:]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--T", nargs="+", type=int, default=[8, 32])
    p.add_argument("--exporters", nargs="+", default=["torchscript", "dynamo"], choices=["torchscript", "dynamo"])
    p.add_argument("--calib", type=int, default=256)
    p.add_argument("--test", type=int, default=64)
    p.add_argument("--memory-limit", default=None)
    p.add_argument("--min-spread", type=float, default=1e-3)
    p.add_argument("--work", default=str(ROOT / "out" / "scale"), help="folder for models, data and outputs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--table", metavar="ROWS.json", help="print the table of rows saved by --json; run nothing")
    args = p.parse_args()
    if args.table:
        print(_table(saved_rows(args.table), args.min_spread))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        size = input_size(name)
        cal, test = work / f"cal{size}_{args.calib}.npz", work / f"test{size}_{args.test}.npz"
        if not cal.exists():
            images = photos()
            np.savez(cal, x=crops(images, args.calib, size, seed=0))
            np.savez(test, x=crops(images, args.test, size, seed=1))
        for exporter in args.exporters:
            model = work / f"{name}.{exporter}.onnx"
            failed = None if model.exists() else export(name, exporter, model)
            for T in args.T:
                row = {"model": name, "exporter": exporter, "T": T, "memory_limit": args.memory_limit}
                if failed:
                    row.update(exit=None, error=[f"export failed: {failed}"])
                else:
                    out = work / f"{name}.{exporter}.T{T}.snn.onnx"
                    row.update(convert(model, T, cal, test, args.memory_limit, out))
                rows.append(row)
                print(_line(row, args.min_spread), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows))
    print(_table(rows, args.min_spread))


def saved_rows(path: str) -> list[dict]:
    """The rows a benchmark printed with --json (the line of JSON among its other output)."""
    with open(path) as handle:
        return json.loads(next(line for line in handle if line.startswith("[{")))


def fidelity(report: dict, min_spread: float) -> str:
    """"rel. L2 / cosine" of the SNN's output against the ANN's, marked degenerate where the ANN's
    output hardly varies across inputs (spread < ``min_spread``) or is itself ~0 (RMS < 1e-6: the
    signal died out in the random network, and a rate code cannot resolve it)."""
    if report.get("output_rel_error") is None:
        return "-"
    figures = f"{report['output_rel_error']:.3f} / {report['output_cosine']:.4f}"
    spread, rms = report.get("ann_output_spread"), report["output_rmse"] / report["output_rel_error"] \
        if report["output_rel_error"] else None
    if spread is not None and spread < min_spread:
        return f"{figures} (degenerate: ANN spread {spread:.1e})"
    if rms is not None and rms < 1e-6:
        return f"{figures} (degenerate: ANN output RMS {rms:.0e})"
    return figures


def _line(row: dict, min_spread: float) -> str:
    if row.get("report") is None:
        return f"{row['model']} {row['exporter']} T={row['T']}: exit {row.get('exit')} {row.get('error')}"
    r = row["report"]
    return (f"{row['model']} {row['exporter']} T={row['T']}: exit 0, {row['wall_s']} s, "
            f"peak {row['peak_rss_gib']} GiB, rel. L2 / cos {fidelity(r, min_spread)}, stages {r['timings']}")


def _table(rows: list[dict], min_spread: float) -> str:
    lines = ["| model | exporter | T | exit | wall s | peak RSS GiB | statistics s | phase 2 s | check s | "
             "evaluation s | runs (samples x steps) | rel. L2 / cosine |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        r = row.get("report")
        if r is None:
            lines.append(f"| {row['model']} | {row['exporter']} | {row['T']} | {row.get('exit')} | | | | | | | | "
                         f"{' '.join(row.get('error') or [])[:120]} |")
            continue
        t = r["timings"]
        runs = r["memory"]["stages"]
        sizes = ", ".join(f"{k}: {v['samples'][0]}-{v['samples'][1]} x {v['steps'][0]}-{v['steps'][1]}"
                          for k, v in runs.items() if k in ("phase 2", "SNN"))
        lines.append(f"| {row['model']} | {row['exporter']} | {row['T']} | 0 | {row['wall_s']} | "
                     f"{row['peak_rss_gib']} | "
                     f"{t.get('statistics', 0):.1f} | {t.get('phase 2', 0):.1f} | {t.get('network check', 0):.1f} | "
                     f"{t.get('evaluation', 0):.1f} | {sizes} | {fidelity(r, min_spread)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
