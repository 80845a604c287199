"""Phase 2 for the int8 target: quantise each layer's weights when its inputs' thresholds are final,
then put the calibrated threshold, potential and bias on the layer's integer grid.

The maths is :mod:`onnx2snn.snn.int8`. In phase 2's layer loop, before layer l is searched,
:func:`quantize_layer` replaces its Conv/Gemm weight by ``sigma_o q / c`` (int8 ``q`` per output
channel, ``c`` from the thresholds the earlier layers ended with) and its bias by the nearest
multiple of ``sigma_o``; the layer is then calibrated on the quantised weights, as it will run,
and :func:`integer_params` rounds theta (at least one step) and the bias current to multiples of
``sigma_o``, v(0) to ``sigma_o (m + 1/2)`` (:mod:`onnx2snn.snn.int8`). After the last layer
:func:`quantize_readout` quantises the weighted ops
after the last spiking layer (their bias stays float: the readout is analog).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import UnsupportedModelError
from ..graph import load, weights
from ..graph.plan import Plan
from ..snn import int8
from ..snn.params import LayerParams
from ..targets import Target
from .refit import replace_weights, weighted_source


def quantize_problems(ann: onnx.ModelProto, plan: Plan) -> list[tuple[str, str, str, str]]:
    """Before any work, as UnsupportedModelError problems: every spiking layer whose current is not
    one Conv/Gemm of its own, and every op between spiking layers with no integer form."""
    problems, shapes = [], load.sample_shapes(ann)
    ones = {layer.output: np.ones(()) for layer in plan.layers}
    for layer in plan.layers:
        source = weighted_source(ann, layer.current)
        if source is None:
            problems.append(_not_one_layer(layer))
            continue
        node = next(n for n in ann.graph.node if n.name == source.name)
        try:
            int8.input_factors(ann, node, ones, shapes)
        except UnsupportedModelError as exc:
            problems += [p for p in exc.problems if p not in problems]
    return problems


def _not_one_layer(layer) -> tuple[str, str, str, str]:
    return (layer.name, layer.op_type, "its input current is not one Conv/Gemm with weights of its own "
            "(a MatMul + Add, shared weights, or a sum of layers)", "use --target onnx")


def quantize_layer(work: onnx.ModelProto, plan: Plan, layer, params: dict[str, LayerParams], target: Target,
                   shapes: dict[str, tuple[int, ...]]) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """(``work`` with layer's weights and bias quantised, its sigma per output channel, its bias);
    ``shapes``: the model's sample shapes (:func:`onnx2snn.graph.load.sample_shapes`, which
    quantising does not change)."""
    source = weighted_source(work, layer.current)
    if source is None:
        raise UnsupportedModelError("the int8 target cannot quantise this layer:", [_not_one_layer(layer)])
    return _quantize(work, plan, params, source, target, shapes, keep_bias=False)


def quantize_readout(work: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], done: set[str],
                     target: Target, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """``work`` with every Conv/Gemm not in ``done`` (the layers' own) quantised, bias kept."""
    for node in [n for n in weights.import_graph(work).nodes if n.op in ("Conv", "Gemm") and n.name not in done]:
        work = _quantize(work, plan, params, node, target, shapes, keep_bias=True)[0]
    return work


def _quantize(work, plan, params, source: gs.Node, target: Target, shapes, keep_bias: bool):
    """Quantise the Conv/Gemm ``source`` of ``work`` (see the module docstring)."""
    node = next(n for n in work.graph.node if n.name == source.name)
    thetas = {layer.output: params[layer.name].threshold for layer in plan.layers}
    c = int8.input_factors(work, node, thetas, shapes)
    w = int8.initializer(work, node.input[1])
    w_out = int8.output_major(node, w)
    has_bias = len(node.input) > 2 and node.input[2]
    b = int8.initializer(work, node.input[2]) if has_bias else np.zeros(len(w_out), w.dtype)
    b = np.broadcast_to(b, (len(w_out),)).astype(w.dtype)
    limited = target.bias_levels is not None and not keep_bias
    new, sigma = int8.quantize(w_out, c, target.layer_scale, b if limited else None)
    b = b if keep_bias else int8.on_grid(b, sigma, limit=target.bias_levels).astype(w.dtype)
    return replace_weights(work, source, int8.output_major(node, new), b), sigma, b


def integer_params(p: LayerParams, sigma: np.ndarray, shape: tuple[int, ...], target: Target,
                   layer_bias: np.ndarray) -> LayerParams:
    """``p`` with theta (at least one step) and the bias current on the grid ``sigma``, v(0) half a
    step off it (per channel: axis 0 of the layer's neuron ``shape``), within the target's ranges:
    theta and v(0) within ``state_levels`` steps, the bias current plus the layer's own bias
    ``layer_bias`` (already on the grid) within ``bias_levels``."""
    channel = (sigma.size,) + (1,) * (len(shape) - 1)
    theta = int8.on_grid(np.broadcast_to(p.threshold, channel), sigma, minimum=1, limit=target.state_levels)
    v0 = int8.potential_on_grid(np.broadcast_to(p.v0, shape), sigma, limit=target.state_levels)
    bias = None
    if p.bias is not None:
        base = np.reshape(layer_bias, channel).astype(np.float64)
        bias = (int8.on_grid(np.broadcast_to(p.bias, channel) + base, sigma, limit=target.bias_levels) - base)
        bias = bias.astype(np.float32)
    return LayerParams(theta, v0, p.source + ", int8 grid", p.dead, bias=bias, reset=p.reset)
