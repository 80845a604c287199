"""Unrolled export: the converted model with standard ONNX ops only (no custom domain, no
functions), for any ONNX runtime (onnxruntime on CPU/GPU, TensorRT, ...).

Each IFNeuron node is replaced by its function body for the model's T -- the time loop written
out step by step -- with internal names prefixed by the node's name (``<activation>/if/u3``), so
the result is deterministic and readable. The computation is the same, op for op.
"""

from __future__ import annotations

import onnx
from onnx import helper

from ..ops import if_neuron


def unroll(snn: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the converted model ``snn`` in standard ONNX ops only."""
    T = if_neuron.time_steps(snn)
    out = onnx.ModelProto()
    out.CopyFrom(snn)
    if T is None:
        return out
    opset = next(o.version for o in out.opset_import if o.domain in ("", "ai.onnx"))
    body = if_neuron.make_function(T, opset)
    nodes = []
    for node in out.graph.node:
        if node.domain == if_neuron.DOMAIN and node.op_type == if_neuron.OP_TYPE:
            nodes += _expand(node, body)
        else:
            nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.functions[:]
    kept = [o for o in out.opset_import if o.domain != if_neuron.DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(kept)
    out.metadata_props.add(key="onnx2snn.unrolled", value="IFNeuron written out in standard ops")
    return out


def _expand(node: onnx.NodeProto, body: onnx.FunctionProto) -> list[onnx.NodeProto]:
    formal = dict(zip(body.input, node.input))
    formal.update({f: a for f, a in zip(body.output, node.output) if a})
    rename = lambda name: formal.get(name, f"{node.name}/{name}")  # noqa: E731
    expanded = []
    for inner in body.node:
        if inner.output and all(o in body.output and o not in formal for o in inner.output):
            continue  # an output the node does not use (the final potential)
        copy = helper.make_node(inner.op_type, [rename(i) for i in inner.input],
                                [rename(o) for o in inner.output], name=f"{node.name}/{inner.name}")
        copy.attribute.extend(inner.attribute)
        expanded.append(copy)
    return expanded
