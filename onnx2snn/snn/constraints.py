"""A target profile's constraints (:mod:`onnx2snn.targets`), checked on models.

:func:`refuse_up_front` rejects, before any work, an ANN whose SNN the target cannot run (all its
nodes at once); :func:`violations` reads a converted SNN -- its IFNeuron nodes and the rewrite's
record, nothing else -- and lists every parameter or node the target does not allow. The pipeline
runs it on every conversion, so a constraint that calibration failed to honour is an error, not
a silently different model.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..errors import UnsupportedModelError
from ..graph import weights
from ..ops import Role, if_neuron, lookup_proto
from ..targets import Target
from .rewrite import Record


def refuse_up_front(ann: onnx.ModelProto, target: Target) -> None:
    """UnsupportedModelError listing the ANN's nodes that ``target`` cannot run."""
    if target.max_pool:
        return
    problems = [(n.name, n.op_type, f"max pooling has no form on target '{target.name}'",
                 "use average pooling in the ANN, or convert with --target onnx")
                for n in ann.graph.node if (spec := lookup_proto(n)) is not None and spec.role is Role.MAXPOOL]
    if problems:
        raise UnsupportedModelError(f"target '{target.name}' cannot run this model:", problems)


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
        theta, v0 = (consts.get(node.input[i]) for i in (1, 2))
        if theta is None or v0 is None:
            found.append(f"{node.name}: threshold or v(0) is not a constant")
            continue
        if not target.initial_potential and np.any(v0 != 0):
            found.append(f"{node.name}: v(0) is not 0 in {int(np.count_nonzero(v0))} neurons "
                         f"(largest |v0| {float(np.max(np.abs(v0))):.3g}); target '{target.name}' has none")
        if target.channel_thresholds and np.squeeze(theta).ndim > 1:
            found.append(f"{node.name}: thresholds vary within a channel (shape {list(theta.shape)})")
    return found
