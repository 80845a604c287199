"""Clip-floor activations (QCFS, Bu et al. 2022), trained for conversion: one spiking layer each.

A network trained with the quantization clip-floor-shift activation

    y = theta / L * floor(clip(x / theta, 0, 1) * L + s)  =  theta / L * clip(floor(L x / theta + s), 0, L)

(theta trained, L levels, shift s in [0, 1); the second form holds because 0 <= s < 1) computes
exactly what an IF neuron with threshold theta and v(0) = s * theta fires when driven by a constant
current x for T = L steps: clip(floor((L x + s theta) / theta), 0, L) spikes, rate y. Such a network
therefore converts with theta = the trained threshold and alpha = s (method.md, phase 1 step 4).

torch exports the QCFS module (``x / thresh``, ``clamp(0, 1)``, ``floor(x * L + s) / L``,
``* thresh``) as the chain

    Div(x, theta) -> Clip(., 0, 1) -> Mul(., L) -> Add(., s) -> Floor -> Div(., L) -> Mul(., theta)

:func:`fuse` (a normalisation pass) rewrites each such chain -- scalar constants theta > 0, integer
L >= 1, 0 <= s < 1, each intermediate read only by the next op -- into one node
``ClipFloor(x, theta, L, s)`` of the onnx2snn domain. The node is defined by a model-local function
made of the same seven ops in the same order, so the ANN's outputs are unchanged bit for bit and
stock onnxruntime runs it. The registry below makes ``ClipFloor`` an activation (threshold theta,
alpha s); a ClipFloor that stays in the SNN (a readout) is written back as the seven ops
(:func:`inline`).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.inliner
import onnx_graphsurgeon as gs
from onnx import helper

from .functions import DOMAIN, add_function, onnx_opset
from .registry import OpSpec, Role, const_scalar, const_value, explain_refusal, register

OP_TYPE = "ClipFloor"
INPUTS = ("X", "threshold", "levels", "shift")
_EXPOSED = "an intermediate tensor of the chain is a graph output"


def fuse(graph: gs.Graph) -> int:
    """Replace every clip-floor chain of ``graph`` by a ClipFloor node; returns how many.
    Needs folded constants; run ``graph.cleanup()`` afterwards (the old chains are left unused)."""
    fused, outputs = 0, {t.name for t in graph.outputs}
    for floor in [n for n in graph.nodes if n.op == "Floor"]:
        chain, _ = _match(floor, outputs)
        if chain is None:
            continue  # refused later if it lies between spiking layers, saying why (_floor_refused)
        x, theta, levels, shift, last = chain
        name = floor.name.replace("Floor", "ClipFloor") if "Floor" in floor.name else f"{floor.name}/ClipFloor"
        constants = [gs.Constant(f"{name}/{what}", np.asarray(value, np.float32))
                     for what, value in (("threshold", theta), ("levels", levels), ("shift", shift))]
        out = last.outputs[0]
        last.outputs.clear()
        graph.nodes.append(gs.Node(OP_TYPE, name, domain=DOMAIN, outputs=[out],
                                   inputs=[x, *constants]))
        fused += 1
    return fused


def _match(floor: gs.Node, graph_outputs: set[str]):
    """((x, theta, L, s, last node), None) for the chain around ``floor``, or (None, why not)."""
    add = _producer(floor.inputs[0], "Add")
    mul = _producer(add and _variable(add), "Mul")
    clip = _producer(mul and _variable(mul), "Clip")
    div = _producer(clip and clip.inputs[0], "Div")
    back = _consumer(floor, "Div")
    last = _consumer(back, "Mul") if back else None
    ops = ("Add(s)", "Mul(L)", "Clip(0, 1)", "Div(x, theta)", "Div(L)", "Mul(theta)")
    for op, node in zip(ops, (add, mul, clip, div, back, last)):
        if node is None:
            return None, f"no {op} in its place in the chain (each op read only by the next one)"
    if _variable(div) is not div.inputs[0]:
        return None, "the chain does not start with x / theta"
    theta, levels, shift = const_scalar(div.inputs[1]), const_scalar(_constant(mul)), const_scalar(_constant(add))
    if theta is None or levels is None or shift is None or const_value(div.inputs[1]).dtype != np.float32:
        return None, "theta, L and s are not all constant float32 scalars"
    why = _why_not(clip, back, last, theta, levels, shift)
    inner = {n.outputs[0].name for n in (div, clip, mul, add, floor, back)}
    if why is None and graph_outputs & inner:
        why = _EXPOSED
    return (None, why) if why else ((div.inputs[0], theta, levels, shift, last), None)


def _why_not(clip: gs.Node, back: gs.Node, last: gs.Node, theta: float, levels: float, shift: float):
    """Why the constants do not make a clip-floor, or None."""
    checks = [(theta > 0, f"theta = {theta:g} is not positive"),
              (levels >= 1 and levels == round(levels), f"L = {levels:g} is not an integer >= 1"),
              (0 <= shift < 1, f"the shift s = {shift:g} is not in [0, 1)"),
              (_bounds(clip) == (0.0, 1.0), "the Clip is not Clip(0, 1)"),
              (const_scalar(back.inputs[1]) == levels and _variable(back) is back.inputs[0],
               "the Div after Floor is not a division by L"),
              (const_scalar(_constant(last)) == theta, "the last Mul is not by theta")]
    return next((why for ok, why in checks if not ok), None)


def _producer(tensor, op: str):
    node = tensor.inputs[0] if tensor is not None and tensor.inputs else None
    if node is None or node.op != op or len(tensor.outputs) != 1:
        return None  # not produced by ``op``, or read by more than the chain's next op
    return node


def _consumer(node: gs.Node, op: str):
    readers = list(node.outputs[0].outputs)
    return readers[0] if len(readers) == 1 and readers[0].op == op else None


def _variable(node: gs.Node):
    """The one non-constant input of a binary op, or None."""
    variables = [t for t in node.inputs if not isinstance(t, gs.Constant)]
    return variables[0] if len(variables) == 1 and len(node.inputs) == 2 else None


def _constant(node: gs.Node):
    return next((t for t in node.inputs if isinstance(t, gs.Constant)), None)


def _bounds(clip: gs.Node):
    if len(clip.inputs) != 3:
        return None
    return const_scalar(clip.inputs[1]), const_scalar(clip.inputs[2])


def function(opset: int) -> onnx.FunctionProto:
    """ClipFloor(X, threshold, levels, shift) in the seven standard ops of the torch export."""
    zero = helper.make_tensor("zero", onnx.TensorProto.FLOAT, [], [0.0])
    one = helper.make_tensor("one", onnx.TensorProto.FLOAT, [], [1.0])
    nodes = [helper.make_node("Constant", [], ["zero"], value=zero),
             helper.make_node("Constant", [], ["one"], value=one),
             helper.make_node("Div", ["X", "threshold"], ["scaled"]),
             helper.make_node("Clip", ["scaled", "zero", "one"], ["clipped"]),
             helper.make_node("Mul", ["clipped", "levels"], ["stretched"]),
             helper.make_node("Add", ["stretched", "shift"], ["shifted"]),
             helper.make_node("Floor", ["shifted"], ["count"]),
             helper.make_node("Div", ["count", "levels"], ["level"]),
             helper.make_node("Mul", ["level", "threshold"], ["Y"])]
    return helper.make_function(DOMAIN, OP_TYPE, list(INPUTS), ["Y"], nodes,
                                opset_imports=[helper.make_opsetid("", opset)])


def install(model: onnx.ModelProto) -> None:
    """Add (or replace) the ClipFloor function and the onnx2snn opset import when a node uses it;
    in place."""
    if any(n.domain == DOMAIN and n.op_type == OP_TYPE for n in model.graph.node):
        add_function(model, function(onnx_opset(model)))


def inline(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its ClipFloor nodes written out as their seven ops and the function removed."""
    if not any((f.domain, f.name) == (DOMAIN, OP_TYPE) for f in model.functions):
        return model
    out = onnx.inliner.inline_selected_functions(model, [(DOMAIN, OP_TYPE)])
    kept = [f for f in out.functions if (f.domain, f.name) != (DOMAIN, OP_TYPE)]
    del out.functions[:]
    out.functions.extend(kept)
    return out


def _threshold(node: gs.Node) -> float | None:
    return const_scalar(node.inputs[1])


def _shift(node: gs.Node) -> float | None:
    return const_scalar(node.inputs[3])


def _floor_refused(node: gs.Node) -> tuple[str, str]:
    """Why a Floor left between spiking layers after :func:`fuse` is refused: which part of a
    clip-floor chain around it does not match, and how torch exports one."""
    _, why = _match(node, set())
    why = why or _EXPOSED  # everything else matched, so fuse() left it for this reason
    return (f"it rounds down, which IF neurons reproduce only as the Floor of a QCFS clip-floor chain "
            f"theta / L * floor(clip(x / theta, 0, 1) * L + s), and this one is not: {why}",
            "export the activation as Div(x, theta), Clip(0, 1), Mul(L), Add(s), Floor, Div(L), Mul(theta) "
            "with constant scalars theta > 0, integer L >= 1, 0 <= s < 1 (torch's export of x / theta, "
            "clamp(0, 1), floor(x * L + s) / L, * theta)")


register(OpSpec(OP_TYPE, Role.ACTIVATION, clip_max=_threshold, alpha=_shift, domain=DOMAIN))
explain_refusal("Floor", _floor_refused)
