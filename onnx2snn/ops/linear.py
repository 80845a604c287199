"""Linear family: layers with synapses and element-wise affine arithmetic.

They act on spike trains unchanged because they are affine in their time-varying input x:
``mean_t(W s_t + b) = W mean_t(s_t) + b``, so the output averaged over T equals the op applied to
the firing rate. Their parameters must be constant over time (not computed from spikes), and the
batch axis 0 (which holds T*B rows) must stay apart from the other axes.
"""

from __future__ import annotations

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


_HINT = "export the model with this layer's parameters as constants (eval mode)"

register(
    OpSpec("Conv", Role.WEIGHTED, check=only_first_dynamic, hint=_HINT),
    OpSpec("ConvTranspose", Role.WEIGHTED, check=only_first_dynamic, hint=_HINT),
    OpSpec("Gemm", Role.WEIGHTED, check=_gemm_check, hint=_HINT),
    OpSpec("MatMul", Role.WEIGHTED, check=_matmul_check, hint=_HINT),
    OpSpec("BatchNormalization", Role.LINEAR, check=_bn_check, hint=_HINT),
    OpSpec("Add", Role.LINEAR),
    OpSpec("Sub", Role.LINEAR),
    OpSpec("Neg", Role.LINEAR),
    OpSpec("Sum", Role.LINEAR),
    OpSpec("Mul", Role.LINEAR, check=_mul_check, hint=_HINT),
    OpSpec("Div", Role.LINEAR, check=_div_check, hint=_HINT),
)
