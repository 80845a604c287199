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

from ..errors import UnsupportedModelError
from ..graph import load, weights
from ..graph.plan import Plan
from ..snn import int8
from ..snn.params import LayerParams
from .refit import replace_weights, weighted_source


def quantize_layer(work: onnx.ModelProto, plan: Plan, layer, params: dict[str, LayerParams]
                   ) -> tuple[onnx.ModelProto, np.ndarray]:
    """(``work`` with layer's weights and bias quantised, its sigma per output channel)."""
    source = weighted_source(work, layer.current)
    if source is None:
        raise UnsupportedModelError("the int8 target cannot quantise this layer:",
                                    [(layer.name, layer.op_type, "its input current is not one Conv/Gemm with "
                                      "weights of its own", "use --target onnx")])
    return _quantize(work, plan, params, source.name, keep_bias=False)


def quantize_readout(work: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], done: set[str]
                     ) -> onnx.ModelProto:
    """``work`` with every Conv/Gemm not in ``done`` (the layers' own) quantised, bias kept."""
    for node in [n for n in work.graph.node if n.op_type in ("Conv", "Gemm") and n.name not in done]:
        work = _quantize(work, plan, params, node.name, keep_bias=True)[0]
    return work


def _quantize(work, plan, params, name: str, keep_bias: bool):
    node = next(n for n in work.graph.node if n.name == name)
    thetas = {layer.output: params[layer.name].threshold for layer in plan.layers}
    c = int8.input_factors(work, node, thetas, load.sample_shapes(work))
    w = int8.weight(work, node)
    new, sigma = int8.quantize(int8.output_major(node, w), c)
    b = (int8.weight(work, _bias_view(node)) if len(node.input) > 2 and node.input[2]
         else np.zeros(len(sigma), w.dtype))
    b = np.broadcast_to(b, sigma.shape).astype(w.dtype)
    b = b if keep_bias else int8.on_grid(b, sigma).astype(w.dtype)
    gs_node = next(n for n in weights.import_graph(work).nodes if n.name == name)
    return replace_weights(work, gs_node, int8.output_major(node, new), b), sigma


def _bias_view(node: onnx.NodeProto):
    """A stand-in whose input 1 is ``node``'s bias (for :func:`int8.weight`)."""
    return onnx.helper.make_node(node.op_type, [node.input[0], node.input[2]], ["_"])


def integer_params(p: LayerParams, sigma: np.ndarray, shape: tuple[int, ...]) -> LayerParams:
    """``p`` with theta (at least one step) and the bias current on the grid ``sigma``, v(0) half a
    step off it (per channel: axis 0 of the layer's neuron ``shape``)."""
    channel = (sigma.size,) + (1,) * (len(shape) - 1)
    theta = int8.on_grid(np.broadcast_to(p.threshold, channel), sigma, minimum=1)
    v0 = int8.potential_on_grid(np.broadcast_to(p.v0, shape), sigma)
    bias = None if p.bias is None else int8.on_grid(np.broadcast_to(p.bias, channel), sigma)
    return LayerParams(theta, v0, p.source + ", int8 grid", p.dead, bias=bias)
