"""The int8 target's arithmetic: int8 weights per output channel, integer thresholds, potentials, biases.

Integer form of a spiking layer, what a chip runs (z_i in {0, 1} are input spikes, or the analog
input of the first layer; q, n, m, beta integers, |q| <= 127)::

    v_o(0) = m_o ;  v_o += sum_i q_oi z_i + beta_o ;  spike when v_o >= n_o ;  v_o -= n_o

onnx2snn runs the same layer in float with ``W_oi = sigma_o q_oi / c_i``, ``theta_o = sigma_o n_o``,
``v0 = sigma_o (m_o + 1/2)``, bias ``sigma_o beta_o``: the float potential is ``sigma_o`` times the
integer one plus half a step. For integers ``v >= n`` iff ``v + 1/2 >= n`` with a margin of half a
step, so the float model fires exactly when the chip does although its sums round (a tie
``v = n``, common in integers, would otherwise go either way in float); subtracting ``n`` keeps the
half step. (Measured on digits_mlp at T = 8: without the half step 25 of 32,768 spikes of its second
layer differed from integer arithmetic; with it none, tests/test_int8.py.)
``c_i`` is what one unit of input i stands for in the float
model: a spike of the layer that produced it carries that layer's threshold theta (per channel),
an average pool over k values divides it by k, a Flatten spreads a channel's factor over its
positions, and the analog input has c = 1. Quantising ``W_eff = W c`` (per output channel,
symmetric: ``sigma_o = max_i |W_eff_oi| / 127``, ``q = round(W_eff / sigma)``) therefore needs the
thresholds of the layers before -- phase 2 quantises each layer when they are final, then
calibrates its own threshold, potential and bias and puts them on its grid ``sigma_o``
(:mod:`onnx2snn.calibration.quantize`). :func:`input_factors` walks back from a Conv/Gemm through
the ops above; anything else between spiking layers (a residual Add, a Concat, max pooling) has no
such form and is refused by name.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..errors import UnsupportedModelError
from ..graph import weights

LEVELS = 127  # symmetric int8
PASS_THROUGH = ("Identity", "Dropout")


def input_factors(model: onnx.ModelProto, node: onnx.NodeProto, thetas: dict[str, np.ndarray],
                  shapes: dict[str, tuple[int, ...]], aliases: dict[str, str] | None = None) -> np.ndarray:
    """c per input channel (Conv) or feature (Gemm) of ``node``, or a scalar 1 for analog input.

    ``thetas``: tensor -> per-channel threshold of the spiking layer writing it; ``aliases``: tensors
    that stand for another (an SNN's readout rate -> the spikes it averages)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consts = {i.name for i in model.graph.initializer} | {n.output[0] for n in model.graph.node
                                                          if n.op_type == "Constant"}
    tensor, ops = node.input[0], []
    while True:
        tensor = (aliases or {}).get(tensor, tensor)
        if tensor in thetas:
            c = np.asarray(thetas[tensor], np.float64).reshape(-1)
            break
        prev = producers.get(tensor)
        if prev is None or _analog(prev, producers, thetas, consts):
            return np.ones(())
        if prev.op_type not in PASS_THROUGH + ("AveragePool", "GlobalAveragePool", "Flatten", "Reshape"):
            raise UnsupportedModelError("the int8 target cannot quantise this layer's input:",
                                        [(prev.name, prev.op_type, f"sits between spiking layers before "
                                          f"'{node.name}' and has no integer form",
                                          "use Conv/Gemm, average pooling and Flatten only, or --target onnx")])
        ops.append((prev, shapes.get(prev.input[0], ())))
        tensor = prev.input[0]
    for op, in_shape in reversed(ops):  # from the spiking layer forward to ``node``
        if op.op_type == "AveragePool":
            c = c / float(np.prod(_attr(op, "kernel_shape")))
        elif op.op_type == "GlobalAveragePool":
            c = c / float(np.prod(in_shape[1:]))
        elif op.op_type in ("Flatten", "Reshape") and len(in_shape) > 1:
            c = np.repeat(np.broadcast_to(c, (in_shape[0],)), int(np.prod(in_shape[1:])))
    return c


def _analog(node, producers, thetas, consts) -> bool:
    """True when nothing upstream of ``node`` is a spike train (the analog input's scaling)."""
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        for t in n.input:
            if t in thetas:
                return False
            if t in producers and t not in consts and t not in seen:
                seen.add(t)
                stack.append(producers[t])
    return True


def output_major(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """The weight with the output channel on axis 0 (a Gemm's B is [in, out] unless transB)."""
    if node.op_type == "Gemm" and not _attr(node, "transB", 0):
        return w.T
    return w


def _attr(node: onnx.NodeProto, name: str, default=None):
    found = [a for a in node.attribute if a.name == name]
    return onnx.helper.get_attribute_value(found[0]) if found else default


def scale(w_out: np.ndarray, c: np.ndarray, per_layer: bool = False,
          bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the effective weight ``W c`` in float64, its step ``sigma`` per output channel) for
    output-major ``w_out`` and input factors ``c`` (per axis-1 entry, or a scalar): sigma = the
    channel's largest ``|W c|`` / 127 (1 for an all-zero channel); ``per_layer``: one sigma for all
    channels (still returned once per channel); ``bias``: a bias that must fit the same 127 steps
    (DYNAP-CNN's biases share the weights' 8 bits: sinabs's ``discretize.py`` takes the coarser of
    the two scales, so does this)."""
    eff = w_out.astype(np.float64) * _per_input(c, w_out.ndim)
    peak = np.abs(eff.reshape(len(eff), -1)).max(axis=1)
    if bias is not None:
        peak = np.maximum(peak, np.abs(np.asarray(bias, np.float64)))
    if per_layer:
        peak = np.full_like(peak, peak.max())
    return eff, np.where(peak > 0, peak / LEVELS, 1.0)


def _per_input(c: np.ndarray, ndim: int) -> np.ndarray:
    """Input factors ``c`` shaped to broadcast against an output-major weight of ``ndim`` axes."""
    c = np.asarray(c, np.float64)
    return c.reshape((1, -1) + (1,) * (ndim - 2)) if c.ndim else c


def quantize(w_out: np.ndarray, c: np.ndarray, per_layer: bool = False,
             bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(float weight ``sigma q / c`` of dtype ``w_out``'s, sigma per output channel): ``W c``
    rounded to integer multiples ``q`` of its :func:`scale` (same arguments)."""
    eff, sigma = scale(w_out, c, per_layer, bias)
    step = sigma.reshape((-1,) + (1,) * (eff.ndim - 1))
    return (np.rint(eff / step) * step / _per_input(c, w_out.ndim)).astype(w_out.dtype), sigma


def on_grid(values: np.ndarray, sigma: np.ndarray, minimum: int | None = None,
            limit: int | None = None) -> np.ndarray:
    """``values`` (channel on axis 0, one ``sigma`` each) rounded to integer multiples of ``sigma``,
    at least ``minimum`` steps and at most ``limit`` steps in size when given; float32."""
    v = np.asarray(values, np.float64)
    s = sigma.reshape((-1,) + (1,) * (v.ndim - 1))
    n = np.rint(v / s)
    if limit is not None:
        n = np.clip(n, -limit, limit)
    if minimum is not None:
        n = np.maximum(n, minimum)
    return (n * s).astype(np.float32)


def potential_on_grid(values: np.ndarray, sigma: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Initial potentials as ``sigma (m + 1/2)`` with integer ``m`` (channel on axis 0, ``|m| <=
    limit``): the nearest such value (module docstring: the half step makes float and integer
    spikes agree)."""
    v = np.asarray(values, np.float64)
    s = sigma.reshape((-1,) + (1,) * (v.ndim - 1))
    m = np.floor(v / s)
    if limit is not None:
        m = np.clip(m, -limit, limit - 1)
    return ((m + 0.5) * s).astype(np.float32)


def off_grid(values: np.ndarray, sigma: np.ndarray) -> bool:
    """Whether ``values / sigma`` (channel on axis 0) lie further than float32 rounding from
    integers."""
    r = np.asarray(values, np.float64) / sigma.reshape((-1,) + (1,) * (np.ndim(values) - 1))
    return bool(np.any(np.abs(r - np.rint(r)) > 1e-3 + 1e-6 * np.abs(r)))


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    """The initializer ``name`` as an array."""
    return weights.to_array(next(i for i in model.graph.initializer if i.name == name))
