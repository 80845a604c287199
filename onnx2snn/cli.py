"""Command line: parse arguments, call the API, print the report. Nothing else.

Exit status: 0 success; 2 bad usage or bad input (one line on stderr says what and how to fix);
3 the converted model was written but comparing it on the test data failed (the report says why);
1 internal error (a bug: please report it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from . import progress
from ._version import __version__
from .config import Config, Granularity, Method
from .data import ImageOptions, load_path
from .errors import ConfigError, DataError, Onnx2SnnError, OutputError
from .export import save_model, unroll
from .export.files import output_folder
from .graph.load import load_model
from .graph.weights import WeightStore
from .pipeline import convert
from .report import format_text, guarded, summary
from .simulation.runtime import default_providers
from .snn.unrolled import FORMS
from .targets import TARGETS

EPILOG = """Data: .npz archives with the model input as 'x' (or by input name) and optional integer
labels 'y'; .npy arrays (input only); or a folder of images (class subfolders give labels), read
with Pillow as x = (pixels/255 - mean) / std. Without --calib/--data, MODEL.calib.npz and
MODEL.test.npz beside the model are used when they exist. Exit status: 0 ok, 2 bad input or usage
(nothing written), 3 converted and written but the comparison on the test data failed, 1 internal
error."""
REPORT_SWEEP = (1, 2, 4, 8, 16, 32)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show '(default: X)' unless the help text already states its default or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(prog="onnx2snn", description="Convert a ReLU network in ONNX into "
                                "a spiking network of integrate-and-fire neurons and check it.",
                                epilog=EPILOG, formatter_class=_Formatter)
    p.add_argument("model", help="the ANN, an .onnx file")
    p.add_argument("-T", "--timesteps", dest="T", type=int, default=d.T, help="SNN time steps")
    p.add_argument("-o", "--output", help="converted model path (default: MODEL.snn.onnx beside MODEL)")
    _add_data_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--sweep", type=_steps, default=(),
                   help="also report SNN accuracy at each of these T, e.g. --sweep 1,2,4,8,16,32")
    p.add_argument("--method", choices=[m.value for m in Method], default=d.method.value,
                   help="dual-phase (ours) or a baseline: max (Diehl 2015), percentile (Rueckauer "
                        "2017), percentile-half (Deng & Gu 2021)")
    p.add_argument("--phase", type=int, choices=[1, 2], default=d.phase,
                   help="2: phase 1 + phase 2 error optimisation; 1: phase 1 thresholds only")
    p.add_argument("--percentile", type=float, default=None,
                   help="threshold = this percentile of positive activations, 100 = max "
                        f"(default: {d.percentile:g} for dual-phase, 99.9 percentile baselines)")
    p.add_argument("--fit-weights", action="store_true",
                   help="phase 2 also fits Conv/Gemm weights through the spiking neurons, layer by layer, "
                        "keeping a fit only where it lowers the layer's error (changes the weights)")
    p.add_argument("--refit-weights", action="store_true",
                   help="phase 2 also refits Conv/Gemm weights by least squares (changes the weights)")
    p.add_argument("--granularity", choices=[g.value for g in Granularity], default=None,
                   help="one threshold per channel or per layer (default: channel for dual-phase, "
                        "tensor for the baselines)")
    p.add_argument("--alpha", type=float, default=None,
                   help="initial potential v(0) = alpha * threshold (default: 0.5; 0 for max and percentile; "
                        "a clip-floor (QCFS) layer keeps its trained shift)")
    p.add_argument("--target", choices=list(TARGETS), default=d.target,
                   help="deployment profile the conversion is calibrated for: "
                        + "; ".join(f"{t.name}: {t.summary}" for t in TARGETS.values()))
    p.add_argument("--rate-boundary", metavar="OP[,OP]", default="",
                   help="also let these op types sit between spiking layers, computed on rates (mean over T; not "
                        "event-driven, listed in the report); LRN always is one (default: none more)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="at most this many samples per onnxruntime run (fewer when the memory limit asks)")
    p.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="memory budget of the conversion, e.g. 2GiB or 512MiB: every onnxruntime run is sized "
                        "to fit it, over samples and, if need be, time steps; results do not depend on it "
                        "(default: the smaller of 4 GiB and half of the memory available)")
    p.add_argument("--calib-samples", type=int, default=None,
                   help="use at most this many calibration samples (default: all)")
    p.add_argument("--score-output", default=None,
                   help="output holding class scores (default: first float output shaped [N, K])")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime intra-op threads; also phase-2 search candidates run side by side (default: all)")
    p.add_argument("--provider", action="append", default=None,
                   help="onnxruntime execution provider, repeatable, in order of preference "
                        f"(default: what this onnxruntime offers: {', '.join(default_providers())})")
    _add_output_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"onnx2snn {__version__}")
    return p


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calib", help="calibration data that sets the thresholds: .npz, .npy or a folder of images")
    p.add_argument("--data", help="test data on which ANN and SNN are compared: .npz, .npy or a folder of images")
    p.add_argument("--mean", type=_floats, default=(0.0,),
                   help="image folders: per-channel mean subtracted from pixels/255, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", type=_floats, default=(1.0,),
                   help="image folders: per-channel std dividing (pixels/255 - mean)")
    p.add_argument("--size", type=_size, default=None,
                   help="image folders: resize to HxW, e.g. 28x28 (default: the model's input size)")


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unroll", nargs="?", const="steps", choices=FORMS, default=None, metavar="FORM",
                   help="write the SNN in standard ONNX ops only (no onnx2snn domain, no functions), "
                        "for any ONNX runtime; FORM of the IF loops: 'steps' (default: written out "
                        "step by step, the most portable), 'scan' (a Scan over the steps), 'auto' "
                        "(Scan for layers of >= 4096 neurons per sample: what onnx2snn runs, faster "
                        "in onnxruntime)")
    p.add_argument("--nir", metavar="OUT.nir", default=None,
                   help="also write the SNN in the Neuromorphic Intermediate Representation (needs 'nir'); "
                        "with --target nir-portable or nir-reset-zero in the form sinabs, snnTorch and Norse import")
    p.add_argument("--nir-neuron", choices=["IF", "LIF"], default="IF",
                   help="neuron node of the portable NIR: IF (sinabs, Norse) or LIF, a leak-free LIF, the only "
                        "neuron snnTorch 1.0 runs from NIR (needs a nir-portable or nir-reset-zero target)")
    p.add_argument("--report", metavar="DIR", default=None,
                   help="also write an HTML report with plots to DIR (needs matplotlib); implies "
                        "--sweep 1,2,4,8,16,32 unless --sweep is given")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    if args.quiet:
        progress.set_enabled(False)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the summary or the JSON alone,
            report = _run(args)                        # whatever a library prints while we work
    except Onnx2SnnError as exc:
        print("onnx2snn: error: " + " ".join(line.strip() for line in str(exc).splitlines()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onnx2snn: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with -v
        if args.verbose:
            raise
        print(f"onnx2snn: internal error: {type(exc).__name__}: {exc} (rerun with -v for the "
              "traceback and please report it)", file=sys.stderr)
        return 1
    if args.json:
        print(format_text(report), file=sys.stderr)
        print(json.dumps(report))
    else:
        print(format_text(report))
    return 3 if report.get("evaluation_error") else 0


def _run(args) -> dict:
    config = Config(T=args.T, method=args.method, phase=args.phase, percentile=args.percentile,
                    alpha=args.alpha, batch_size=args.batch_size, refit_weights=args.refit_weights,
                    fit_weights=args.fit_weights, granularity=args.granularity,
                    calib_samples=args.calib_samples, threads=args.threads,
                    providers=tuple(args.provider) if args.provider else None, memory_limit=args.memory_limit,
                    rate_boundary=args.rate_boundary, target=args.target)
    model = Path(args.model)
    output = Path(args.output) if args.output else model.with_name(model.stem + ".snn.onnx")
    _check_outputs(args, model, output)
    store = WeightStore()  # the model's weights, held once (onnx2snn.graph.weights)
    ann = store.detach(load_model(model))
    if args.nir_neuron != "IF" and not config.profile.portable_nir:
        raise ConfigError(f"--nir-neuron {args.nir_neuron} writes the portable NIR: add --target nir-portable or "
                          "--target nir-reset-zero")
    if args.nir:
        from .export.nir import check_exportable
        check_exportable(ann, config.rate_boundary,
                         portable=config.profile.portable_nir)  # refused now, not after the conversion
    calib, data = _data_paths(model, args.calib, args.data)
    images = ImageOptions(args.mean, args.std, args.size)
    calib, data = (load_path(p, ann, what, images) for p, what in ((calib, "calibration data"), (data, "test data")))
    sweep = args.sweep or (REPORT_SWEEP if args.report else ())
    result = convert(ann, calib, config, data=data, score_output=args.score_output, sweep=sweep)
    del ann  # the input model's weights that conversion replaced (folding) can go:
    result.compact()
    snn = result.light_snn
    save_model(unroll(snn, args.unroll) if args.unroll else snn, output, source=model)  # the work is safe now
    report = summary(result, str(model), str(output))
    if args.nir:
        from .export.nir import save_nir
        portable = config.profile.portable_nir
        report["nir"] = guarded("NIR export", report["warnings"],
                                lambda: save_nir(snn, args.nir, portable, args.nir_neuron) or args.nir)
    if args.report:
        from .export.report_html import write_report
        report["report"] = guarded("HTML report", report["warnings"],
                                   lambda: str(write_report(report, args.report) / "index.html"))
    return report


def _check_outputs(args, model: Path, output: Path) -> None:
    """Refuse before any work when an output cannot be produced (folder missing or read-only,
    output over the input, optional package missing), so a refused run writes nothing."""
    for path, flag in ((output, "-o"), (args.nir, "--nir"), (args.report, "--report")):
        if not path:
            continue
        path = Path(path)
        if model.exists() and path.exists() and path.resolve() == model.resolve():
            raise ConfigError(f"{flag} '{path}' is the input model; choose another path")
        output_folder(path, flag, probe=True)
        if flag != "--report" and path.is_dir():
            raise OutputError(f"{flag} '{path}' is a directory; pass a file name")
    if args.nir:
        from .export.nir import import_nir
        import_nir()
    if args.report:
        from .export.report_html import import_pyplot
        import_pyplot()


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(t) for t in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HxW, e.g. 28x28") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"'{text}': height and width must be >= 1")
    return h, w


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': every T must be >= 1, e.g. 1,2,4,8")
    return steps


def _data_paths(model: Path, calib: str | None, data: str | None):
    """Explicit paths, else the sample data shipped beside the model; test data falls back to the
    calibration data (the report says so)."""
    calib = calib or _beside(model, "calib")
    data = data or _beside(model, "test")
    if calib is None:
        raise DataError(f"no calibration data for '{model}': pass --calib DATA.npz (arrays 'x' = model "
                        f"input samples, optional 'y' = labels), or put {model.stem}.calib.npz beside it")
    return calib, data or calib


def _beside(model: Path, kind: str) -> str | None:
    path = model.with_name(f"{model.stem}.{kind}.npz")
    return str(path) if path.is_file() else None
