"""Operation counts and an energy estimate: the ANN's multiply-accumulates (MACs) against the SNN's
synaptic operations (SOPs) counted from the spikes it actually emitted.

* ANN: ``MACs = sum over Conv/Gemm/MatMul of (output elements x inputs per output)`` per sample
  (Conv: ``C_in / groups x prod(kernel)`` inputs per output; Gemm/MatMul: the inner dimension).
* SNN, event-driven view: the first linear layer sees the analog input, which is constant under
  direct encoding, so its MACs are paid once. Every other linear op is driven by spikes: a spike of
  spiking layer l costs ``fanout_l`` accumulates, where ``fanout_l = sum over the linear ops that
  its spikes reach (through pooling, reshapes and residual adds) of MACs(op) / inputs(op)`` -- the
  mean number of synapses leaving one input neuron (exact for dense layers and unpadded convs,
  a slight overestimate at padded borders). ``SOPs = sum_l spikes_l x fanout_l``, spikes per
  sample = firing rate x neurons x T.
* Energy (45 nm CMOS, Horowitz 2014, the figures used by the SNN literature): 4.6 pJ per 32-bit
  float MAC, 0.9 pJ per accumulate. ``E_ANN = 4.6 pJ x MACs``; ``E_SNN = 4.6 pJ x first-layer MACs
  + 0.9 pJ x SOPs``. An estimate of arithmetic only: memory traffic and neuron updates are left out.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from . import load
from .plan import Plan

PJ_PER_MAC = 4.6
PJ_PER_AC = 0.9
LINEAR = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class Energy:
    ann_macs: float  # per sample
    snn_macs: float  # the first layer's, per sample
    snn_sops: float  # per sample, over all T steps
    sops_by_layer: dict[str, float]

    @property
    def ann_uj(self) -> float:
        return self.ann_macs * PJ_PER_MAC * 1e-6

    @property
    def snn_uj(self) -> float:
        return (self.snn_macs * PJ_PER_MAC + self.snn_sops * PJ_PER_AC) * 1e-6


def estimate(ann: onnx.ModelProto, plan: Plan, firing_rates: dict[str, float], T: int) -> Energy:
    """Energy of one sample through the ANN and through the SNN at ``T`` (see module docstring).

    Preconditions: ``ann`` is the normalised model with static shapes after the batch axis;
    ``firing_rates`` are measured spike fractions per spiking layer (``Evaluation.firing_rates``).
    """
    shapes, consumers = _shapes(ann), {}
    for node in ann.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    macs = {n.name: _macs(n, shapes) for n in ann.graph.node if n.op_type in LINEAR}
    first = _first_linear(ann, plan)
    sops = {}
    for layer in plan.layers:
        neurons = float(np.prod(shapes.get(layer.output, ()) or (1,)))
        spikes = firing_rates.get(layer.name, 0.0) * neurons * T
        sops[layer.name] = spikes * _fanout(layer.output, consumers, shapes, macs)
    return Energy(float(sum(macs.values())), float(macs.get(first, 0.0)), float(sum(sops.values())), sops)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of activations (batch axis dropped) and full shapes of initializers."""
    shapes = load.sample_shapes(model)
    shapes.update({i.name: tuple(i.dims) for i in model.graph.initializer})
    return shapes


def _macs(node: onnx.NodeProto, shapes) -> float:
    out = float(np.prod(shapes.get(node.output[0], ()) or (0,)))
    if node.op_type == "Conv":
        w = shapes.get(node.input[1], ())
        return out * float(np.prod(w[1:])) if w else 0.0
    x = shapes.get(node.input[0], ())
    trans_a = any(a.name == "transA" and a.i for a in node.attribute)
    inner = (x[0] if trans_a and len(x) > 1 else x[-1]) if x else 0
    return out * float(inner)


def _inputs(node: onnx.NodeProto, shapes) -> float:
    return float(np.prod(shapes.get(node.input[0], ()) or (1,)))


def _fanout(tensor: str, consumers, shapes, macs, depth: int = 0) -> float:
    """Mean accumulates per unit of ``tensor``, followed through pass-through ops (pooling,
    reshapes, residual adds: one unit reaches about one unit downstream) to the linear ops."""
    total = 0.0
    for node in consumers.get(tensor, []):
        if node.op_type in LINEAR:
            total += macs[node.name] / _inputs(node, shapes) if node.input[0] == tensor else 0.0
        elif node.op_type != "Relu" and depth < 32 and node.output:
            total += _fanout(node.output[0], consumers, shapes, macs, depth + 1)
    return total


def _first_linear(ann: onnx.ModelProto, plan: Plan) -> str | None:
    """The linear op that computes the first spiking layer's current from the analog input."""
    dynamic = set(plan.dynamic)
    for node in ann.graph.node:
        if node.op_type in LINEAR and not any(i in dynamic for i in node.input):
            return node.name
    return None
