"""Activation family: ReLU-like ops become IF neurons; other activations are refused.

An IF neuron with threshold theta and reset by subtraction has a firing rate in [0, theta] that
approximates ``clip(z, 0, theta)``. It therefore reproduces exactly the activations that are
ReLU, possibly clipped above: ``Relu``, ``Clip(x, 0[, m])`` (ReLU6 is m = 6), ``Max(x, 0)``
and ``LeakyRelu`` with ``alpha = 0``. A trained clip value m is the natural threshold.
"""

from __future__ import annotations

import numpy as np

from .registry import OpSpec, Role, const_scalar, const_value, register

_HINT_RELU = ("retrain or re-export the model with ReLU (or ReLU6 / Clip(0, m)) activations, "
              "or cut the graph before this node")


def _clip_check(node, dynamic):
    low = const_scalar(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1].name else None
    if low != 0.0:
        return "Clip is ReLU-like only with a constant lower bound of exactly 0"
    high = _clip_high(node)
    if high is not None and not high > 0:
        return f"Clip upper bound {high} is not positive"
    if len(node.inputs) > 2 and node.inputs[2].name and const_value(node.inputs[2]) is None:
        return "Clip upper bound is not a constant"
    return None


def _clip_high(node):
    return const_scalar(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2].name else None


def _max_check(node, dynamic):
    consts = [const_value(t) for t in node.inputs]
    if len(node.inputs) != 2 or sum(c is not None for c in consts) != 1:
        return "Max is ReLU-like only as Max(x, 0) with one constant input"
    c = next(c for c in consts if c is not None)
    if not np.all(c == 0):
        return "Max with a non-zero constant is not a ReLU"
    return None


def _leaky_check(node, dynamic):
    alpha = float(node.attrs.get("alpha", 0.01))
    if alpha != 0.0:
        return (f"LeakyRelu(alpha={alpha}) has negative outputs that spikes (>= 0) cannot carry")
    return None


register(
    OpSpec("Relu", Role.ACTIVATION),
    OpSpec("Clip", Role.ACTIVATION, check=_clip_check, clip_max=_clip_high, hint=_HINT_RELU),
    OpSpec("Max", Role.ACTIVATION, check=_max_check, hint=_HINT_RELU),
    OpSpec("LeakyRelu", Role.ACTIVATION, check=_leaky_check, hint=_HINT_RELU),
)

_WHY = {
    "Sigmoid": "its output is a smooth saturating curve, not a ReLU",
    "Tanh": "it produces negative outputs that spikes (>= 0) cannot carry",
    "Gelu": "it produces negative outputs and is not piecewise linear",
    "Erf": "it is part of a GELU (negative, non-ReLU outputs)",
    "Elu": "it produces negative outputs",
    "Selu": "it produces negative outputs",
    "Celu": "it produces negative outputs",
    "PRelu": "it produces negative outputs (learned slope)",
    "Softplus": "it is a smooth curve, not a ReLU",
    "Softsign": "it produces negative outputs",
    "HardSigmoid": "it has a non-zero offset and saturates",
    "HardSwish": "it produces negative outputs (x * hardsigmoid(x))",
    "Mish": "it produces negative outputs",
    "ThresholdedRelu": "its output jumps at the threshold instead of growing from 0",
    "Softmax": "it couples all units of a layer (only allowed at the output)",
    "LogSoftmax": "it couples all units of a layer (only allowed at the output)",
    "Exp": "it is not piecewise linear",
    "Log": "it is not piecewise linear",
    "Abs": "it passes negative inputs as positive outputs",
}
register(*(OpSpec(op, Role.NONLINEAR, check=lambda n, d, why=why: why, hint=_HINT_RELU)
           for op, why in _WHY.items()))
