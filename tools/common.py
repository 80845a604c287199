"""What the tools share: the repository's folders, the shipped models, an importable package.

Tools run from a checkout as ``python tools/NAME.py``; Python puts ``tools/`` first on the path,
so they import this module and each other by name. The package is the installed ``onnx2snn``
(``pip install -e .``, README); from a checkout where it is not installed, importing this module
makes the checkout's package importable -- the one place a tool touches ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

if importlib.util.find_spec("onnx2snn") is None:
    sys.path.insert(0, str(ROOT))


def shipped() -> list[str]:
    """Names of the shipped models (``models/NAME.onnx``), sorted."""
    return sorted(p.stem for p in MODELS.glob("*.onnx") if not p.name.endswith(".snn.onnx"))


def model_path(name: str) -> Path:
    """models/NAME.onnx, or models/extra/NAME.onnx for a model trained as an experiment."""
    path = MODELS / f"{name}.onnx"
    return path if path.exists() else MODELS / "extra" / f"{name}.onnx"
