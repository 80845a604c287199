"""Graphs nobody here wrote: the nine model-zoo CNNs inside the onnx wheel, converted by the CLI.

    python tools/bench_light.py [--models bvlc_alexnet ...] [--T 4 8] [--calib 8] [--test 4]
                                [--work out/light] [--json]

The wheel's ``onnx/backend/test/data/light/`` holds Caffe2-era exports of AlexNet, ZFNet-512,
GoogLeNet (Inception v1), Inception v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19 and DenseNet-121
(opset 9, batch fixed at 1, weights made by ``ConstantOfShape``: deterministic, not trained). For
each model and T, one child process runs ``python -m onnx2snn light_NAME.onnx -T T --calib cal.npz
--data test.npz --json`` with every other setting at its default, and the table gives: exit status,
wall time, peak RSS (tools/peak_rss.py), the rate boundaries the conversion placed (LRN), output
fidelity against the ANN on the test images (relative L2 error and cosine of the outputs; where the
ANN's output hardly varies across inputs, ``ann_output_spread`` < ``--min-spread``, the outputs are
degenerate and the table says so), and whether the ``--unroll scan`` and ``--unroll steps`` forms of
the written SNN give outputs identical to its function form in stock onnxruntime on every test image.

The generated weights make every output channel of a layer alike, so the nets answer the same
whatever the input and their fidelity figures are degenerate. ``--random-weights SEED`` converts the
same graphs with their Conv and Gemm weights replaced by seeded He-normal ones (``N(0, 2 / fan_in)``,
biases 0; everything else as shipped): the graphs nobody here wrote, with outputs that vary.

Inputs: crops of real photos at 224x224, ImageNet-normalised (tools/photos.py). Needs only the
package's own dependencies (scikit-learn for the photos; scikit-image adds more if installed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import common  # noqa: F401 - the package importable from a checkout
from bench_scale import convert, fidelity, saved_rows  # tools/: the script's folder is on sys.path
from photos import crops, photos

from onnx2snn.export import unroll

ROOT = Path(__file__).resolve().parent.parent
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
NAMES = ("bvlc_alexnet", "zfnet512", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
         "vgg19", "densenet121")


def input_name(model: onnx.ModelProto) -> str:
    inits = {t.name for t in model.graph.initializer}
    (name,) = [i.name for i in model.graph.input if i.name not in inits]
    return name


def randomise(path: Path, out: Path, seed: int) -> None:
    """Write ``path`` with its (folded) Conv / Gemm weights replaced by seeded He-normal ones."""
    import onnx_graphsurgeon as gs
    rng = np.random.default_rng(seed)
    graph = gs.import_onnx(onnx.load(str(path)))
    graph.fold_constants().cleanup()
    for node in graph.nodes:
        if node.op not in ("Conv", "Gemm") or not isinstance(node.inputs[1], gs.Constant):
            continue
        shape = node.inputs[1].values.shape
        fan_in = int(np.prod(shape[1:])) if node.op == "Conv" or node.attrs.get("transB", 0) else shape[0]
        weight = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32)
        node.inputs[1] = gs.Constant(node.inputs[1].name + "/random", weight)
        if len(node.inputs) > 2 and isinstance(node.inputs[2], gs.Constant):
            node.inputs[2] = gs.Constant(node.inputs[2].name + "/zero", np.zeros_like(node.inputs[2].values))
    model = gs.export_onnx(graph.cleanup())
    model.ir_version = max(model.ir_version, 4)  # IR 3 lists initializers as graph inputs: these are not
    onnx.save(model, str(out))


def forms_identical(path: Path, x: np.ndarray) -> dict[str, bool]:
    """Run the written SNN (function form) and its scan and steps lowerings in stock onnxruntime,
    one image at a time; True per form where every output equals the function form's bit for bit."""
    snn = onnx.load(str(path))
    name = input_name(snn)

    def outputs(model: onnx.ModelProto) -> list[np.ndarray]:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return [session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))]

    reference = outputs(snn)
    return {form: all(np.array_equal(a, b) for a, b in zip(outputs(unroll(snn, form)), reference))
            for form in ("scan", "steps")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(NAMES), choices=NAMES)
    p.add_argument("--T", nargs="+", type=int, default=[4, 8])
    p.add_argument("--calib", type=int, default=8)
    p.add_argument("--test", type=int, default=4)
    p.add_argument("--min-spread", type=float, default=1e-3)
    p.add_argument("--work", default=str(ROOT / "out" / "light"), help="folder for data and outputs")
    p.add_argument("--random-weights", type=int, default=None, metavar="SEED",
                   help="replace Conv/Gemm weights by seeded He-normal ones (outputs that vary)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--table", metavar="ROWS.json", help="print the table of rows saved by --json; run nothing")
    args = p.parse_args()
    if args.table:
        print(_table(saved_rows(args.table), args.min_spread))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    images = photos()
    rows = []
    for name in args.models:
        model = LIGHT / f"light_{name}.onnx"
        if not model.exists():
            sys.exit(f"this onnx release ({onnx.__version__}) does not ship {model}")
        key = input_name(onnx.load(str(model), load_external_data=False))
        if args.random_weights is not None:
            model, shipped = work / f"light_{name}.random{args.random_weights}.onnx", model
            with contextlib.redirect_stdout(sys.stderr):  # graphsurgeon prints its warnings to stdout
                randomise(shipped, model, args.random_weights)
        cal, test = work / f"{name}_cal.npz", work / f"{name}_test.npz"
        np.savez(cal, **{key: crops(images, args.calib, 224, seed=0)})
        np.savez(test, **{key: crops(images, args.test, 224, seed=1)})
        for T in args.T:
            out = work / f"{model.stem}.T{T}.snn.onnx"
            row = {"model": name, "T": T, **convert(model, T, cal, test, None, out)}
            if row["exit"] == 0:
                row["forms_identical"] = forms_identical(out, np.load(test)[key])
            rows.append(row)
            print(_line(row, args.min_spread), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows))
    print(_table(rows, args.min_spread))


def _line(row: dict, min_spread: float) -> str:
    if row.get("report") is None:
        return f"{row['model']} T={row['T']}: exit {row['exit']} {row.get('error')}"
    return (f"{row['model']} T={row['T']}: exit 0, {row['wall_s']} s, peak {row['peak_rss_gib']} GiB, "
            f"rel. L2 / cos {fidelity(row['report'], min_spread)}, forms {row['forms_identical']}")


def _table(rows: list[dict], min_spread: float) -> str:
    lines = ["| model | T | exit | wall s | peak RSS GiB | spiking layers | rate boundaries | "
             "rel. L2 / cosine vs ANN | scan, steps = function form |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        r = row.get("report")
        if r is None:
            lines.append(f"| {row['model']} | {row['T']} | {row['exit']} | {row['wall_s']} | {row['peak_rss_gib']} "
                         f"| | | {' '.join(row.get('error') or [])[:120]} | |")
            continue
        forms = ", ".join("yes" if ok else "NO" for ok in row["forms_identical"].values())
        lines.append(f"| {row['model']} | {row['T']} | 0 | {row['wall_s']} | {row['peak_rss_gib']} | "
                     f"{len(r.get('layers', []))} | {len(r.get('rate_boundaries', []))} | "
                     f"{fidelity(r, min_spread)} | {forms} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
