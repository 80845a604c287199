"""A target profile's constraints (:mod:`onnx2snn.targets`), checked on models.

:func:`up_front_problems` lists, before any work, the nodes of an ANN that the target cannot run
(the pipeline refuses them all at once, with those of :mod:`onnx2snn.calibration.quantize`).
:func:`violations` reads a converted SNN -- its IFNeuron nodes and the rewrite's record, nothing
else -- and lists every parameter or node the target does not allow. The pipeline runs it on every
conversion, so a constraint that calibration failed to honour is an error, not a silently
different model.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..graph import load, weights
from ..ops import Role, if_neuron, lookup_proto
from ..targets import Target
from . import int8
from .rewrite import Record


def up_front_problems(ann: onnx.ModelProto, target: Target) -> list[tuple[str, str, str, str]]:
    """The ANN's nodes that ``target`` cannot run, as UnsupportedModelError problems."""
    if target.max_pool:
        return []
    return [(n.name, n.op_type, f"max pooling has no form on target '{target.name}'",
                 "use average pooling in the ANN, or convert with --target onnx")
            for n in ann.graph.node if (spec := lookup_proto(n)) is not None and spec.role is Role.MAXPOOL]


def violations(snn: onnx.ModelProto, target: Target) -> list[str]:
    """Every way ``snn`` breaks ``target``'s constraints, one line each (empty: it complies)."""
    neurons = [n for n in snn.graph.node if if_neuron.is_if_neuron(n)]
    wanted = {name for n in neurons for name in n.input[1:3]}
    consts = {i.name: weights.to_array(i) for i in snn.graph.initializer if i.name in wanted}
    found = []
    record = Record.read(snn)
    if not target.max_pool and record is not None and record.pools:
        found.append(f"spiking max-pools {sorted(record.pools)}: target '{target.name}' has no max pooling")
    for node in neurons:
        if if_neuron.reset_of(node) != target.reset:
            found.append(f"{node.name}: resets by {if_neuron.reset_of(node)}; target '{target.name}' resets by "
                         f"{target.reset}")
        theta, v0 = (consts.get(node.input[i]) for i in (1, 2))
        if theta is None or v0 is None:
            found.append(f"{node.name}: threshold or v(0) is not a constant")
            continue
        if not target.initial_potential and np.any(v0 != 0):
            found.append(f"{node.name}: v(0) is not 0 in {int(np.count_nonzero(v0))} neurons "
                         f"(largest |v0| {float(np.max(np.abs(v0))):.3g}); target '{target.name}' has none")
        if target.channel_thresholds and np.squeeze(theta).ndim > 1:
            found.append(f"{node.name}: thresholds vary within a channel (shape {list(theta.shape)})")
    if target.int8:
        found += _int8_violations(snn, neurons, consts, record, target)
    return found


def _int8_violations(snn, neurons, consts, record, target: Target) -> list[str]:
    """Every weight off the int8 grid of its output channel, and every threshold, v(0) and bias
    current off its layer's grid (:mod:`.int8`), recomputed from the model alone."""
    producers = {o: n for n in snn.graph.node for o in n.output}
    init = {i.name: i for i in snn.graph.initializer}
    thetas = {n.output[0]: consts[n.input[1]] for n in neurons}
    shapes = load.sample_shapes(snn)
    aliases = dict(record.readouts) if record is not None else {}
    found, sigmas = [], {}
    layers = {_source(n.input[0], producers, init)[0] for n in neurons}  # Conv/Gemm outputs feeding neurons
    for node in [n for n in snn.graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in init]:
        c = int8.input_factors(snn, node, thetas, shapes, aliases)
        w = int8.output_major(node, int8.initializer(snn, node.input[1]))
        shares = target.bias_levels is not None and node.output[0] in layers and len(node.input) > 2 and node.input[2]
        bias = weights.to_array(init[node.input[2]]) if shares else None  # the bias shares the 127 steps
        eff, sigma = int8.scale(w, c, target.layer_scale, bias)
        sigmas[node.output[0]] = sigma
        if int8.off_grid(eff, sigma):
            found.append(f"{node.name}: weights are not int8 multiples of one scale per output channel")
    for node in neurons:
        source, biases = _source(node.input[0], producers, init)
        sigma = sigmas.get(source)
        if sigma is None:
            found.append(f"{node.name}: its current does not come from one Conv/Gemm")
            continue
        layer = producers[source]
        if len(layer.input) > 2 and layer.input[2] in init:
            biases.append(weights.to_array(init[layer.input[2]]))
        channel = (sigma.size,) + (1,) * max(consts[node.input[2]].ndim - 1, 0)
        half = np.reshape(sigma / 2, channel)  # v(0) = sigma (m + 1/2), see .int8
        limits = (target.state_levels, target.state_levels, target.bias_levels)
        for (what, value), limit in zip((
                ("threshold", consts[node.input[1]]), ("v(0)", consts[node.input[2]] - half),
                ("bias", sum(np.broadcast_to(b.reshape(channel) if b.size == sigma.size else b, channel)
                             for b in biases) if biases else np.zeros(channel))), limits):
            value = np.broadcast_to(value, np.broadcast_shapes(np.shape(value), channel))
            if int8.off_grid(value, sigma):
                found.append(f"{node.name}: {what} is not an integer multiple of the layer's weight scale")
            elif limit is not None and np.any(np.abs(value / np.reshape(sigma, channel)) > limit + 0.5 + 1e-3):
                found.append(f"{node.name}: {what} exceeds {limit} steps of the layer's weight scale")
        theta = np.broadcast_to(consts[node.input[1]], channel)
        if target.layer_scale and not np.all(theta == theta.flat[0]):
            found.append(f"{node.name}: more than one threshold in the layer; target '{target.name}' has one")
    return found


def _source(tensor, producers, init) -> tuple[str, list]:
    """The Conv/Gemm output behind an IF current (through the repeat and the bias Adds), and the
    constant biases added on the way."""
    biases = []
    while tensor in producers and producers[tensor].op_type in ("Tile", "Add"):
        node = producers[tensor]
        if node.op_type == "Tile":
            tensor = node.input[0]
            continue
        const = [i for i in node.input if i in init]
        if len(const) != 1:
            break
        biases.append(weights.to_array(init[const[0]]))
        tensor = next(i for i in node.input if i not in init)
    return tensor, biases
