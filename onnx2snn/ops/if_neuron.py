"""The ``onnx2snn.IFNeuron`` operator: attributes, ONNX function body and numpy reference.

Semantics (integrate-and-fire, reset by subtraction, time-batched)::

    IFNeuron(X, threshold, v0) -> (Y, V)          attribute T (int >= 1)

    X          input current, shape [T*B, ...], time-major: rows t*B .. t*B+B-1 are step t
    threshold  theta > 0, broadcastable to one step [B, ...] (scalar, per channel or per neuron)
    v0         initial membrane potential v(0), broadcastable to [B, ...]
    Y          spikes, shape of X: Y_t = theta * [u_t >= theta]   (a spike carries theta)
    V          membrane potential after the last step, shape [B, ...]

    u_t = v_{t-1} + X_t ;  Y_t = theta * [u_t >= theta] ;  v_t = u_t - Y_t ;  v_{-1} = v0

Attribute ``reset`` (absent: ``"subtract"``, the above) may be ``"zero"``: the neuron of NIR's IF as
Norse runs it (and snnTorch its LIF form), for the ``nir-reset-zero`` target::

    u_t = v_{t-1} + X_t ;  f_t = [u_t > theta] ;  Y_t = theta * f_t ;  v_t = u_t - u_t * f_t

One model uses one mode; its function body is built for it (:func:`install`).

The whole time loop of one layer is inside the op, so a converted model maps the ANN input to the
T-step SNN output in one call. The ONNX function body unrolls the loop for the file's T with
standard ops (Split, Add, GreaterOrEqual, Cast, Mul, Sub, Concat), so a converted file runs in a plain
``onnxruntime.InferenceSession`` and passes ``onnx.checker.check_model(full_check=True)``.
The numpy reference (:func:`if_forward`, :class:`IFNeuron`), phase 2's kernel
(:mod:`onnx2snn.calibration.if_kernel`) and the standard-op lowerings onnx2snn's sessions run
(:mod:`onnx2snn.snn.unrolled`: step by step, or a Scan over the steps) perform the same float
operations in the same order.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx.reference.op_run import OpRun

from .functions import DOMAIN, DOMAIN_VERSION, add_function, onnx_opset  # noqa: F401 - part of this module's API

OP_TYPE = "IFNeuron"
INPUTS = ("X", "threshold", "v0")
OUTPUTS = ("Y", "V")
ATTR_T = "T"
ATTR_RESET = "reset"
RESETS = ("subtract", "zero")


def if_forward(x: np.ndarray, threshold: np.ndarray, v0: np.ndarray, T: int, reset: str = "subtract"):
    """Numpy reference of IFNeuron (``reset``: see the module docstring).

    Preconditions: ``x.shape[0]`` is a multiple of ``T`` (time-major), ``threshold > 0``.
    Returns ``(spikes, v_final)`` with ``spikes.shape == x.shape``.
    """
    if T < 1 or x.shape[0] % T:
        raise ValueError(f"IFNeuron: leading dimension {x.shape[0]} is not a multiple of T={T}")
    steps = np.split(x, T, axis=0)
    dtype = x.dtype
    theta = np.asarray(threshold, dtype=dtype)
    zero = theta - theta
    v = np.asarray(v0, dtype=dtype)
    out = []
    for x_t in steps:
        u = v + x_t
        fired = u > theta if reset == "zero" else u >= theta
        s = np.where(fired, theta, zero).astype(dtype, copy=False)
        v = u - (u * fired.astype(dtype) if reset == "zero" else s)
        out.append(s)
    return np.concatenate(out, axis=0), v


class IFNeuron(OpRun):
    """``onnx.reference`` implementation: ``ReferenceEvaluator(model, new_ops=[IFNeuron])``.

    ``onnx.reference`` matches a new op by ``(op_domain, class name)``, hence the class name.
    """

    op_domain = DOMAIN

    def _run(self, x, threshold, v0, T=None, reset=None):  # noqa: N803 - ONNX attribute name
        return if_forward(x, threshold, v0, int(T), reset or "subtract")


def make_node(name: str, current: str, threshold: str, v0: str, spikes: str, T: int,
              final_potential: str = "", reset: str = "subtract") -> onnx.NodeProto:
    """One IFNeuron node; ``final_potential`` empty means the V output is not produced."""
    outputs = [spikes] + ([final_potential] if final_potential else [])
    return helper.make_node(OP_TYPE, [current, threshold, v0], outputs, name=name,
                            domain=DOMAIN, **attributes(T, reset))


def attributes(T: int, reset: str = "subtract") -> dict:
    """The node attributes for ``T`` steps and ``reset`` (written only when not the default)."""
    return {ATTR_T: int(T), **({ATTR_RESET: reset} if reset != "subtract" else {})}


def reset_of(node: onnx.NodeProto) -> str:
    """An IFNeuron node's reset mode."""
    found = [a for a in node.attribute if a.name == ATTR_RESET]
    return found[0].s.decode() if found else "subtract"


def make_function(T: int, opset: int, reset: str = "subtract") -> onnx.FunctionProto:
    """The model-local function defining IFNeuron for a fixed ``T``, in ONNX ``opset`` (>= 13).

    The loop over time is unrolled: ``5*T + 2`` standard nodes (:func:`step_nodes` per step), no
    control flow.
    """
    if opset < 13:
        raise ValueError("IFNeuron function bodies need ONNX opset >= 13")
    steps = [f"x{t}" for t in range(T)]
    split_kwargs = {"num_outputs": T} if opset >= 18 else {}
    nodes = [helper.make_node("Split", ["X"], steps, name="split", axis=0, **split_kwargs)]
    v_prev = "v0"
    for t in range(T):
        nodes += step_nodes(t, v_prev, steps[t], opset, reset=reset)
        v_prev = f"m{t}"
    nodes += [
        helper.make_node("Concat", [f"s{t}" for t in range(T)], ["Y"], name="spikes", axis=0),
        helper.make_node("Identity", [v_prev], ["V"], name="final_potential"),
    ]
    return helper.make_function(
        DOMAIN, OP_TYPE, list(INPUTS), list(OUTPUTS), nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=[ATTR_T] + ([ATTR_RESET] if reset != "subtract" else []),
    )


def step_nodes(t, v_prev: str, x: str, opset: int, threshold: str = "threshold",
               reset: str = "subtract") -> list[onnx.NodeProto]:
    """Step ``t`` of the IF loop on input ``x`` and potential ``v_prev`` (threshold tensor ``threshold``)::

        u{t} = v_prev + x ; f{t} = u{t} >= theta ; c{t} = f{t} as theta's type ;
        s{t} = c{t} * theta (the spike: exactly theta or 0) ; m{t} = u{t} - s{t} (the new potential)

    ``reset="zero"``: ``f{t} = u{t} > theta`` and ``m{t} = u{t} - u{t} * c{t}``.

    ``Mul(Cast(...), theta)`` rather than ``Where(f, theta, 0)``: onnxruntime's ``Where`` was the
    slower of the two with a broadcast threshold in every run I tried (ad hoc, not kept)."""
    if reset not in RESETS:
        raise ValueError(f"IFNeuron: reset {reset!r} is not one of {RESETS}")
    zero = reset == "zero"
    return [
        helper.make_node("Add", [v_prev, x], [f"u{t}"], name=f"integrate{t}"),
        helper.make_node("Greater" if zero else "GreaterOrEqual", [f"u{t}", threshold], [f"f{t}"], name=f"fire{t}"),
        _cast_like(f"f{t}", f"c{t}", f"cast{t}", opset, threshold),
        helper.make_node("Mul", [f"c{t}", threshold], [f"s{t}"], name=f"spike{t}"),
        *([helper.make_node("Mul", [f"u{t}", f"c{t}"], [f"lost{t}"], name=f"lost{t}")] if zero else []),
        helper.make_node("Sub", [f"u{t}", f"lost{t}" if zero else f"s{t}"], [f"m{t}"], name=f"reset{t}"),
    ]


def _cast_like(value: str, out: str, name: str, opset: int, threshold: str) -> onnx.NodeProto:
    """The booleans ``value`` as the threshold's type (CastLike from opset 15; float before)."""
    if opset >= 15:
        return helper.make_node("CastLike", [value, threshold], [out], name=name)
    return helper.make_node("Cast", [value], [out], name=name, to=onnx.TensorProto.FLOAT)


def install(model: onnx.ModelProto, T: int, reset: str = "subtract") -> onnx.ModelProto:
    """Add (or replace) the IFNeuron function for ``T`` and ``reset`` and the ``onnx2snn`` opset
    import in place."""
    add_function(model, make_function(T, onnx_opset(model), reset))
    return model


def is_if_neuron(node: onnx.NodeProto) -> bool:
    """True for onnx2snn's IFNeuron (an op of its own domain; a user op of the same name is not)."""
    return node.domain == DOMAIN and node.op_type == OP_TYPE


def time_steps(model: onnx.ModelProto) -> int | None:
    """T of a converted model (from its IFNeuron nodes), or None if it has none."""
    for node in model.graph.node:
        if is_if_neuron(node):
            return next(a.i for a in node.attribute if a.name == ATTR_T)
    return None
