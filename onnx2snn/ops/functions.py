"""Custom-domain functions in a model: the ``onnx2snn`` domain, its version, and adding a
FunctionProto (the IFNeuron body, the clip-floor activation) with its opset import."""

from __future__ import annotations

import onnx
from onnx import helper

DOMAIN = "onnx2snn"
DOMAIN_VERSION = 1


def onnx_opset(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX domain."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def add_function(model: onnx.ModelProto, function: onnx.FunctionProto) -> None:
    """Add ``function`` to ``model`` (replacing one of the same domain and name) and import its
    domain (``onnx2snn``, version ``DOMAIN_VERSION``) if needed; in place."""
    kept = [f for f in model.functions if (f.domain, f.name) != (function.domain, function.name)]
    del model.functions[:]
    model.functions.extend(kept + [function])
    if not any(o.domain == function.domain for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(function.domain, DOMAIN_VERSION))
