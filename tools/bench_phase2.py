"""Cost of phase 2 relative to one SNN evaluation of the calibration set at the same T.

    python tools/bench_phase2.py [--models fashion_cnn mnist_cnn] [--T 4 16] [--repeats 3] [--json]

For each model and T, measured side by side in one process: the median time of phase 2
(``calibrate.phase2``: ANN targets, per-layer segments, search, corrections, spike cache; plus its
network-level check ``guard.check_phase2``: one phase-1 SNN run on the search samples, skipped
when it could not change the outcome) and the
median time of running the phase-1 SNN over the same calibration data (``runtime.run``), both with
the same batch size and threads. The target is ratio <= 3. Models: the shipped ones, and ``vgg32``
(the VGG-like 3x32x32 net of ``tools/bench_runtime.py``, random weights, 512 random samples; needs
torch), the largest net here, on exactly as many samples as phase 2 reads.

``--no-search`` leaves one candidate in each grid (threshold scale 1, alpha 0.5): phase 2 minus
its search -- not a method onnx2snn offers, a floor for what any search costs on top.

``--fit-weights`` times phase 2 with the weight fit (``Config.fit_weights``; issue 20's bound: at
most 10x the SNN evaluation).

``--profile`` instead runs phase 2 + check once per model and T under cProfile and prints the
seconds spent in its parts (targets, search currents, search, measure, commit, segment runs,
spike-cache unpacking, check).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import common
import numpy as np

import onnx2snn
from onnx2snn import Config
from onnx2snn.data import from_arrays, load_npz
from onnx2snn.graph import load
from onnx2snn.simulation.stepwise import run_snn


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


CALIB: dict = {}  # --calib / --calib-samples, for models given as .onnx paths


def model_and_data(name: str, folder: str):
    """(normalised ANN, calibration Dataset): a shipped model, ``vgg32`` (``bench_runtime``'s
    VGG-like 3x32x32 net, torch needed) with 512 uniform random samples -- as many as phase 2 reads
    --, or any .onnx file with the data of ``--calib`` (first ``--calib-samples``)."""
    if name.endswith(".onnx"):
        ann = load.normalize(load.load_model(name))
        return ann, load_npz(CALIB["path"], ann).head(CALIB["samples"])
    if name != "vgg32":
        path = common.model_path(name)
        ann = load.normalize(load.load_model(path))
        return ann, load_npz(path.with_suffix(".calib.npz"), ann)
    from runtime_cases import build  # torch, only for vgg32

    ann = load.normalize(load.load_model(build(name, Path(folder))[0]))
    x = np.random.default_rng(0).uniform(0, 1, (512, 3, 32, 32)).astype(np.float32)
    return ann, from_arrays({ann.graph.input[0].name: x}, ann)


def prepared(name: str, config: Config):
    """The model prepared (statistics collected) on its calibration data, and its phase-1 params."""
    with tempfile.TemporaryDirectory() as tmp:
        ann, calib = model_and_data(name, tmp)
    prep = onnx2snn.prepare(ann, calib, config)
    return prep, prep.phase1()


def bench(name: str, T: int, repeats: int, config: Config) -> dict:
    prep, params = prepared(name, config)
    ann, calib = prep.ann, prep.calib
    snn = prep.rewrite(params, T)
    evaluation = timed(lambda: run_snn(snn, calib, config, [o.name for o in ann.graph.output], prep.budget, "SNN",
                                       source=(ann, prep.plan, params)), repeats)
    calibration = timed(lambda: prep.phase2(params), repeats)
    return {"model": Path(name).stem, "T": T, "calib_samples": len(calib), "snn_eval_s": round(evaluation, 3),
            "phase2_s": round(calibration, 3), "ratio": round(calibration / evaluation, 2)}


PARTS = {"ANN targets": ("targets", "ann_targets"), "search currents": ("calibrate", "_search_currents"),
         "search": ("calibrate", "_search"), "measure E[rate]": ("calibrate", "_measure"),
         "commit": ("calibrate", "_commit"), "segment runs": ("segments", "run"),
         "segment set-up": ("calibrate", "__init__"), "spike store unpack": ("segments", "get"),
         "IF kernel runs": ("if_kernel", "run"), "network check": ("guard", "check_phase2")}


def profile(name: str, T: int, config: Config) -> dict:
    """Seconds (cumulative, cProfile) of phase 2's parts; parts overlap (segment runs happen inside
    search, measure and commit)."""
    import cProfile
    import pstats

    prep, params = prepared(name, config)
    prep.phase2(params)  # warm-up
    prof = cProfile.Profile()
    prof.enable()
    prep.phase2(params)
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())  # tottime over every function = the whole run
    cum = {part: sum(v[3] for (f, _, fn), v in stats.items() if fn == func and f.endswith(f"/{module}.py"))
           for part, (module, func) in PARTS.items()}
    return {"model": Path(name).stem, "T": T, "total_s": round(total, 3), **{k: round(v, 3) for k, v in cum.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["digits_cnn", "digits_resnet", "mnist_cnn", "fashion_cnn"],
                        help="shipped model names, vgg32, or .onnx files (with --calib)")
    parser.add_argument("--calib", help="calibration .npz for models given as .onnx files")
    parser.add_argument("--calib-samples", type=int, default=256)
    parser.add_argument("--T", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fit-weights", action="store_true",
                        help="phase 2 with --fit-weights (its cost against the same SNN evaluation)")
    parser.add_argument("--profile", action="store_true", help="print where phase 2's time goes instead")
    parser.add_argument("--no-search", action="store_true",
                        help="one candidate each for the threshold and v(0) search (a floor for any search)")
    args = parser.parse_args()
    CALIB.update(path=args.calib, samples=args.calib_samples)
    search = {"search_scales": (1.0,), "search_alphas": (0.5,)} if args.no_search else {}
    config = {T: Config(T=T, threads=args.threads, fit_weights=args.fit_weights, **search) for T in args.T}
    if args.profile:
        for m in args.models:
            for T in args.T:
                print(json.dumps(profile(m, T, config[T])))
        return
    rows = [bench(m, T, args.repeats, config[T]) for m in args.models for T in args.T]
    print(f"{'model':<20} {'T':>3} {'calib':>6} {'SNN eval s':>10} {'phase 2 s':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:<20} {r['T']:>3} {r['calib_samples']:>6} {r['snn_eval_s']:>10.3f} "
              f"{r['phase2_s']:>10.3f} {r['ratio']:>6.2f}")
    if args.json:
        print(json.dumps({"rows": rows, "max_ratio": max(r["ratio"] for r in rows)}))


if __name__ == "__main__":
    main()
