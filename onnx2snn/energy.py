"""Operation counts and an energy estimate: the ANN's multiply-accumulates (MACs) against the SNN's
synaptic operations (SOPs) counted from the spikes it actually emitted.

* ANN: ``MACs = sum over Conv/Gemm/MatMul of (output elements x inputs per output)`` per sample
  (Conv: ``C_in / groups x prod(kernel)`` inputs per output; Gemm/MatMul: the inner dimension).
* SNN, event-driven view: the first linear layer sees the analog input, which is constant under
  direct encoding, so its MACs are paid once (so are those of a layer fed by a rate boundary, see
  :mod:`.ops.boundary`: its input is constant too). Every other linear op is driven by spikes: a spike of
  spiking layer l costs ``fanout_l`` accumulates, where ``fanout_l = sum over the weighted ops that
  its spikes reach of MACs(op) / inputs(op)`` -- the mean number of synapses leaving one input
  neuron (exact for dense layers and unpadded convs, grouped and depthwise ones included, a slight
  overestimate at padded borders). Spikes reach them through the ops the registry calls linear or
  max-pooling (pooling, reshapes, transposes and channel shuffles, concatenations, residual adds):
  one unit reaches one unit downstream, except through a Split, where it reaches one of the
  outputs (``fanout = sum_k size_k / size_in x fanout(output k)``). The walk stops at any
  activation (the next spiking layer pays for its own spikes; an analog readout activation ends
  the network) and at ops that are neither. ``SOPs = sum_l spikes_l x fanout_l``, spikes per
  sample = firing rate x neurons x T.
* Energy (45 nm CMOS, Horowitz 2014, the figures used by the SNN literature): 4.6 pJ per 32-bit
  float MAC, 0.9 pJ per accumulate. ``E_ANN = 4.6 pJ x MACs``; ``E_SNN = 4.6 pJ x first-layer MACs
  + 0.9 pJ x SOPs``. An estimate of arithmetic only: memory traffic and neuron updates are left out.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from .graph import load
from .graph.plan import Plan
from .ops import Role, lookup_proto, role_of

PJ_PER_MAC = 4.6
PJ_PER_AC = 0.9


class EnergyError(Exception):
    """The estimate cannot be made for this graph (the report says so and goes on)."""


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
    Raises :class:`EnergyError` naming the tensor whose shape is unknown."""
    shapes, consumers = _shapes(ann), {}
    for node in ann.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    macs = {n.name: _macs(n, shapes) for n in ann.graph.node if role_of(n) is Role.WEIGHTED}
    constant = _constant_input_ops(ann, plan)
    walk = _Fanout(consumers, shapes, macs)
    sops = {}
    for layer in plan.layers:
        spikes = firing_rates.get(layer.name, 0.0) * _size(layer.output, shapes) * T
        sops[layer.name] = spikes * walk(layer.output) if spikes else 0.0
    return Energy(float(sum(macs.values())), float(sum(macs[n] for n in constant)), float(sum(sops.values())),
                  sops)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of activations (batch axis dropped) and full shapes of initializers."""
    shapes = load.sample_shapes(model)
    shapes.update({i.name: tuple(i.dims) for i in model.graph.initializer})
    return shapes


def _size(name: str, shapes) -> float:
    """Elements of one sample of tensor ``name``; EnergyError when its shape is unknown."""
    shape = shapes.get(name)
    if shape is None or any(d <= 0 for d in shape):
        raise EnergyError(f"the shape of tensor '{name}' is unknown after shape inference")
    return float(np.prod(shape)) if shape else 1.0


def _macs(node: onnx.NodeProto, shapes) -> float:
    """The registry's MAC count of a weighted op (its output's shape checked known first)."""
    _size(node.output[0], shapes)
    return lookup_proto(node).macs(node, shapes)


class _Fanout:
    """Mean accumulates per unit of a tensor (module docstring), memoised: each tensor is walked once."""

    def __init__(self, consumers, shapes, macs):
        self.consumers, self.shapes, self.macs, self.memo = consumers, shapes, macs, {}

    def __call__(self, tensor: str) -> float:
        if tensor not in self.memo:
            self.memo[tensor] = 0.0  # a DAG has no cycles; this only guards malformed graphs
            self.memo[tensor] = sum(self._through(node, tensor) for node in self.consumers.get(tensor, []))
        return self.memo[tensor]

    def _through(self, node: onnx.NodeProto, tensor: str) -> float:
        spec = lookup_proto(node)
        role = spec.role if spec else None
        if role is Role.WEIGHTED:
            return self.macs[node.name] / _size(tensor, self.shapes) if node.input[0] == tensor else 0.0
        if role not in (Role.LINEAR, Role.MAXPOOL) or not node.output:
            return 0.0
        outputs = [o for o in node.output if o]
        if spec.splits and len(outputs) > 1:
            whole = _size(tensor, self.shapes)
            return sum(_size(o, self.shapes) / whole * self(o) for o in outputs)
        return sum(self(o) for o in outputs)


def _constant_input_ops(ann: onnx.ModelProto, plan: Plan) -> list[str]:
    """The weighted ops that feed a spiking layer from a constant input (the analog input, or a
    rate boundary's output): they run once, with MACs."""
    dynamic = set(plan.dynamic)
    currents = {layer.current for layer in plan.layers if layer.current not in dynamic}
    feeds = _feeding(ann, currents)
    return [n.name for n in ann.graph.node if role_of(n) is Role.WEIGHTED and n.name in feeds
            and not any(i in dynamic for i in n.input)]


def _feeding(ann: onnx.ModelProto, tensors: set[str]) -> set[str]:
    """Names of the nodes that ``tensors`` depend on."""
    producer = {o: n for n in ann.graph.node for o in n.output}
    found, todo = set(), list(tensors)
    while todo:
        node = producer.get(todo.pop())
        if node is not None and node.name not in found:
            found.add(node.name)
            todo.extend(node.input)
    return found
