"""Normalisation pass: fold inference-mode BatchNormalization into the Conv/Gemm before it.

With s = gamma / sqrt(var + eps), BN(W x + b) = (s * W) x + (s * (b - mean) + beta), per output
channel (axis 0 of a Conv weight; output feature of a Gemm). Folding is exact up to float rounding
and saves one op on every time step of the SNN. A BN is left alone when its producer is not a
weighted op whose output channels the registry can scale (``OpSpec.scale_outputs``: Conv, Gemm
with alpha = beta = 1) with constant parameters, the producer's output is also used elsewhere, or
a parameter is not constant; it still converts (BN is linear), just without the saving.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_graphsurgeon as gs

from ..ops import lookup

log = logging.getLogger(__name__)


def fold_batchnorm(graph: gs.Graph) -> int:
    """Fold every foldable BatchNormalization in place; returns how many were folded."""
    folded = 0
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        producer = _foldable_producer(graph, bn)
        if producer is None:
            continue
        gamma, beta, mean, var = (np.asarray(t.values, dtype=np.float64) for t in bn.inputs[1:5])
        scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        w = np.asarray(producer.inputs[1].values)
        new_w = lookup(producer).scale_outputs(producer, w.astype(np.float64), scale)
        if new_w is None:
            continue
        new_w, cout = new_w.astype(w.dtype), scale.size
        b = (np.asarray(producer.inputs[2].values, dtype=np.float64) if len(producer.inputs) > 2
             else np.zeros(cout))
        b = np.broadcast_to(b.reshape(-1) if b.size == cout else b, (cout,))
        new_b = (scale * (b - mean) + beta).astype(w.dtype)
        producer.inputs[1] = gs.Constant(f"{producer.name}/bn_folded_weight", new_w)
        bias = gs.Constant(f"{producer.name}/bn_folded_bias", new_b)
        if len(producer.inputs) > 2:
            producer.inputs[2] = bias
        else:
            producer.inputs.append(bias)
        producer.outputs[0] = bn.outputs[0]
        bn.outputs.clear()
        bn.inputs.clear()
        folded += 1
    if folded:
        log.info("folded %d BatchNormalization node(s) into the preceding Conv/Gemm", folded)
    return folded


def _foldable_producer(graph, bn):
    if int(bn.attrs.get("training_mode", 0)) or len(bn.outputs) != 1:
        return None
    if not all(isinstance(t, gs.Constant) for t in bn.inputs[1:5]):
        return None
    x = bn.inputs[0]
    if len(x.inputs) != 1 or len(x.outputs) != 1 or x in graph.outputs:
        return None
    producer = x.inputs[0]
    spec = lookup(producer)
    if spec is None or spec.scale_outputs is None:
        return None
    if not all(isinstance(t, gs.Constant) for t in producer.inputs[1:]):
        return None
    return producer
