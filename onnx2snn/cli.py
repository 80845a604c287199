"""Command line: parse arguments, call the API, print the report. Nothing else.

Exit status: 0 success; 2 bad usage or bad input (one line on stderr says what and how to fix);
1 internal error (a bug: please report it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import __version__, progress
from .config import Config, Granularity, Method
from .errors import ConfigError, DataError, Onnx2SnnError
from .export import save_model, unroll
from .load import load_model
from .pipeline import convert
from .report import format_text, summary
from .runtime import default_providers

EPILOG = """Data files are .npz archives with the model input as 'x' (or by input name) and optional
integer labels 'y'. Without --calib/--data, MODEL.calib.npz and MODEL.test.npz beside the model are
used when they exist. Exit status: 0 ok, 2 bad input or usage, 1 internal error."""


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
    p.add_argument("--calib", help="calibration data (.npz) that sets the thresholds")
    p.add_argument("--data", help="test data (.npz) on which ANN and SNN are compared")
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
    p.add_argument("--refit-weights", action="store_true",
                   help="phase 2 also refits Conv/Gemm weights by least squares (changes the weights)")
    p.add_argument("--granularity", choices=[g.value for g in Granularity], default=None,
                   help="one threshold per channel or per layer (default: channel for dual-phase, "
                        "tensor for the baselines)")
    p.add_argument("--alpha", type=float, default=None,
                   help="initial potential v(0) = alpha * threshold (default: 0.5; 0 for max and percentile)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per onnxruntime call")
    p.add_argument("--calib-samples", type=int, default=None,
                   help="use at most this many calibration samples (default: all)")
    p.add_argument("--score-output", default=None,
                   help="output holding class scores (default: first float output shaped [N, K])")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all)")
    p.add_argument("--provider", action="append", default=None,
                   help="onnxruntime execution provider, repeatable, in order of preference "
                        f"(default: what this onnxruntime offers: {', '.join(default_providers())})")
    p.add_argument("--unroll", action="store_true",
                   help="write the SNN in standard ONNX ops only (no onnx2snn domain, no functions), "
                        "for any ONNX runtime")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"onnx2snn {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr)
    if args.quiet:
        progress.set_enabled(False)
    try:
        report = _run(args)
    except Onnx2SnnError as exc:
        print(f"onnx2snn: error: {exc}", file=sys.stderr)
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
    return 0


def _run(args) -> dict:
    config = Config(T=args.T, method=args.method, phase=args.phase, percentile=args.percentile,
                    alpha=args.alpha, batch_size=args.batch_size, refit_weights=args.refit_weights,
                    granularity=args.granularity,
                    calib_samples=args.calib_samples, threads=args.threads,
                    providers=tuple(args.provider) if args.provider else None)
    model = Path(args.model)
    output = Path(args.output) if args.output else model.with_name(model.stem + ".snn.onnx")
    if output.exists() and model.exists() and output.resolve() == model.resolve():
        raise ConfigError(f"output '{output}' is the input model; choose another -o")
    ann = load_model(model)
    calib, data = _data_paths(model, args.calib, args.data)
    result = convert(ann, calib, config, data=data, score_output=args.score_output, sweep=args.sweep)
    save_model(unroll(result.snn) if args.unroll else result.snn, output, source=model)
    return summary(result, str(model), str(output))


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
