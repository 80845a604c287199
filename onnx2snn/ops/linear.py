"""Linear family: layers with synapses and element-wise affine arithmetic.

They act on spike trains unchanged because they are affine in their time-varying input x:
``mean_t(W s_t + b) = W mean_t(s_t) + b``, so the output averaged over T equals the op applied to
the firing rate. Their parameters must be constant over time (not computed from spikes), and the
batch axis 0 (which holds T*B rows) must stay apart from the other axes.
"""

from __future__ import annotations

import numpy as np
from onnx import helper as onnx_helper

from .registry import OpSpec, Role, is_dynamic, only_first_dynamic, register


def _gemm_check(node, dynamic):
    if is_dynamic(node.inputs[1], dynamic) or (len(node.inputs) > 2 and is_dynamic(node.inputs[2], dynamic)):
        return "Gemm with time-varying B or C multiplies two signals"
    if int(node.attrs.get("transA", 0)):
        return "Gemm with transA=1 mixes the batch axis into the product"
    return None


def _matmul_check(node, dynamic):
    a, b = node.inputs[0], node.inputs[1]
    if is_dynamic(a, dynamic) and is_dynamic(b, dynamic):
        return "MatMul of two time-varying signals is not linear"
    if is_dynamic(b, dynamic):
        return "MatMul with the signal as right operand mixes the batch axis"
    return None


def _mul_check(node, dynamic):
    if all(is_dynamic(t, dynamic) for t in node.inputs):
        return "product of two time-varying signals is not linear"
    return None


def _div_check(node, dynamic):
    if is_dynamic(node.inputs[1], dynamic):
        return "division by a time-varying signal is not linear"
    return None


def _bn_check(node, dynamic):
    if int(node.attrs.get("training_mode", 0)):
        return "BatchNormalization in training mode; export the model in eval mode"
    return only_first_dynamic(node, dynamic)


def _attr(node, name, default):
    """An attribute of a ``gs.Node`` (dict) or an ``onnx.NodeProto`` (list)."""
    if isinstance(node.attrs if hasattr(node, "attrs") else None, dict):
        return node.attrs.get(name, default)
    found = [a for a in node.attribute if a.name == name]
    return onnx_helper.get_attribute_value(found[0]) if found else default


def _conv_macs(node, shapes):
    """Output elements x inputs per output (``C_in / groups x prod(kernel)``: the weight's
    dims after the first)."""
    w = shapes.get(node.input[1], ())
    return float(np.prod(shapes[node.output[0]])) * float(np.prod(w[1:])) if w else 0.0


def _matmul_macs(node, shapes):
    """Output elements x the inner dimension (the first axis of A when Gemm's transA is set)."""
    x = shapes.get(node.input[0], ())
    inner = (x[0] if int(_attr(node, "transA", 0)) and len(x) > 1 else x[-1]) if x else 0
    return float(np.prod(shapes[node.output[0]])) * float(inner)


def _conv_scale(node, w, s):
    """Output channel c of a Conv is axis 0 of its weight [C_out, C_in/g, *kernel]."""
    return w * s.reshape((-1,) + (1,) * (w.ndim - 1))


def _gemm_scale(node, w, s):
    """Output feature c of a Gemm is row c of B (transB) or column c; alpha/beta other than 1
    would scale the bias differently: not folded."""
    if float(node.attrs.get("alpha", 1.0)) != 1.0 or float(node.attrs.get("beta", 1.0)) != 1.0:
        return None
    return w * (s[:, None] if int(node.attrs.get("transB", 0)) else s[None, :])


_HINT = "export the model with this layer's parameters as constants (eval mode)"

register(
    OpSpec("Conv", Role.WEIGHTED, check=only_first_dynamic, hint=_HINT, macs=_conv_macs,
           scale_outputs=_conv_scale, nir="Conv"),
    OpSpec("ConvTranspose", Role.WEIGHTED, check=only_first_dynamic, hint=_HINT, macs=_conv_macs),
    OpSpec("Gemm", Role.WEIGHTED, check=_gemm_check, hint=_HINT, macs=_matmul_macs, scale_outputs=_gemm_scale,
           nir="Affine"),
    OpSpec("MatMul", Role.WEIGHTED, check=_matmul_check, hint=_HINT, macs=_matmul_macs, nir="Affine"),
    OpSpec("BatchNormalization", Role.LINEAR, check=_bn_check, hint=_HINT, elementwise=True),
    OpSpec("Add", Role.LINEAR, elementwise=True, nir="Sum"),
    OpSpec("Sub", Role.LINEAR, elementwise=True),
    OpSpec("Neg", Role.LINEAR, elementwise=True),
    OpSpec("Sum", Role.LINEAR, elementwise=True),
    OpSpec("Mul", Role.LINEAR, check=_mul_check, hint=_HINT, elementwise=True, nir="Scale"),
    OpSpec("Div", Role.LINEAR, check=_div_check, hint=_HINT, elementwise=True, nir="Scale"),
)
