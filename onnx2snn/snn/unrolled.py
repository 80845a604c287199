"""Lowering: the converted model in standard ONNX ops only (no custom domain, no functions), for any
ONNX runtime -- and what onnx2snn's own runtime executes.

Each IFNeuron node is replaced by its time loop in one of two standard-op forms, internal names
prefixed by the node's name (``<activation>/if/u3``), so the result is deterministic and readable:

* ``steps``: the function body written out step by step -- Split of X into T steps, per step
  Add, GreaterOrEqual, CastLike, Mul, Sub (:func:`.ops.if_neuron.step_nodes`), Concat of the
  spikes: ``5*T + 2`` plain ops that every runtime supports.
* ``scan``: X viewed as [T, B, ...] (a Reshape, no copy), one ``Scan`` over the T steps whose body
  is one step (the same five ops; the threshold is read from the outer scope) and writes each
  step's spikes into the output, viewed back as [T*B, ...]. No Split and Concat, i.e. two fewer
  copies of the layer's tensor, at a fixed cost per iteration.
* A constant current (direct encoding: the first layer's, computed once on B rows and repeated T
  times by a Tile in the converted model) is read at every step as it is, in both forms, and the
  Tile is dropped.
* ``auto``: ``scan`` for layers of at least :data:`SCAN_MIN_NEURONS` neurons per sample, ``steps``
  for smaller ones (where the iteration cost outweighs the copies) and where shapes are unknown.

Every form performs the same float operations in the same order as the IFNeuron function, so
spikes and outputs are identical (``tests/test_unrolled.py``). ``--unroll`` writes ``steps`` by
default, the most portable form; :func:`.runtime.make_session` runs ``auto``.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ConfigError
from ..graph import weights
from ..ops import if_neuron

log = logging.getLogger(__name__)

FORMS = ("steps", "scan", "auto")
# Neurons per sample from which a layer runs as a Scan under "auto": on 2 cores, Scan was slower
# on the 1-2k neuron digits layers at B = 1 and faster from the 6k-32k neuron layers of the 28x28
# and 32x32 nets on (columns steps / scan of tools/bench_runtime.py, table in docs/runtime.md).
SCAN_MIN_NEURONS = 4096


def unroll(snn: onnx.ModelProto, form: str = "steps") -> onnx.ModelProto:
    """A copy of the converted model ``snn`` in standard ONNX ops only, its IF loops in ``form``."""
    if form not in FORMS:
        raise ConfigError(f"unknown loop form {form!r} (--unroll); expected one of {', '.join(FORMS)}")
    T = if_neuron.time_steps(snn)
    out = weights.copy_model(snn)
    if T is None:
        return out
    opset = if_neuron.onnx_opset(out)
    reset = next(if_neuron.reset_of(n) for n in out.graph.node if if_neuron.is_if_neuron(n))
    body = if_neuron.make_function(T, opset, reset)
    shapes, constants = _step_shapes(out), _constant_currents(out.graph, T)
    types = {i.name: i.data_type for i in out.graph.initializer}
    nodes = []
    for node in out.graph.node:
        if not if_neuron.is_if_neuron(node):
            nodes.append(node)
            continue
        constant = constants.get(node.input[0])
        elem_type = types.get(node.input[1])  # the threshold's: CastLike's target, as a Cast
        sample = shapes.get(node.input[0])
        if T > 1 and elem_type and _use_scan(form, sample, node.name):
            nodes += _scan(node, T, opset, elem_type, constant, sample, reset)
        else:
            nodes += _expand(node, body, constant)
    dropped = [n for n in nodes if n.op_type == "Tile" and n.output[0] in constants]
    nodes = [n for n in nodes if n not in dropped]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    _drop_unused_initializers(out.graph, {n.input[1] for n in dropped})
    del out.functions[:]
    kept = [o for o in out.opset_import if o.domain != if_neuron.DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(kept)
    out.metadata_props.add(key="onnx2snn.unrolled", value=f"IFNeuron written out in standard ops ({form})")
    return out


def _step_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The shape of one row (the axes after the batch axis) of every tensor whose rank and sizes
    shape inference knows; a tensor it does not know is left out (its IF node is not a Scan)."""
    out = {}
    g = model.graph
    for value in list(g.value_info) + list(g.input) + list(g.output):
        t = value.type.tensor_type
        if not t.HasField("shape") or not t.shape.dim:
            continue
        rest = t.shape.dim[1:]
        if all(d.HasField("dim_value") and d.dim_value > 0 for d in rest):
            out[value.name] = tuple(d.dim_value for d in rest)
    return out


def _drop_unused_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove the initializers ``names`` that no node reads any more (a dropped Tile's repeats)."""
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name not in names or i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _constant_currents(graph: onnx.GraphProto, T: int) -> dict[str, str]:
    """{IF input: the [B, ...] tensor it repeats} for IF inputs that are a Tile by [T, 1, .., 1]
    (direct encoding's constant current, see :mod:`.rewrite`) read by nothing else: the loop
    reads that tensor at every step instead, and the Tile is dropped."""
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for o in graph.output:
        uses[o.name] = uses.get(o.name, 0) + 1
    feeds_if = {n.input[0] for n in graph.node if if_neuron.is_if_neuron(n)}
    inits = {i.name: i for i in graph.initializer}
    found = {}
    for node in graph.node:
        if node.op_type != "Tile" or node.output[0] not in feeds_if or uses[node.output[0]] != 1:
            continue
        repeats = weights.to_array(inits[node.input[1]]) if node.input[1] in inits else None
        if repeats is not None and repeats.size and repeats[0] == T and (repeats[1:] == 1).all():
            found[node.output[0]] = node.input[0]
    return found


def _use_scan(form: str, sample_shape: tuple[int, ...] | None, name: str) -> bool:
    """Whether IF node ``name`` becomes a Scan: ``scan``, or ``auto`` for large layers, and only
    when the shape of one sample of its current is known (onnxruntime's Scan must know the
    shapes of its body's outputs; without it the node is written step by step)."""
    if form == "steps":
        return False
    if sample_shape is None:
        log.debug("IF node '%s': the shape of its current is unknown; written step by step, not as a Scan", name)
        return False
    return form == "scan" or int(np.prod(sample_shape, dtype=np.int64)) >= SCAN_MIN_NEURONS


def _expand(node: onnx.NodeProto, body: onnx.FunctionProto, constant: str | None = None) -> list[onnx.NodeProto]:
    """The function body for ``node``, step by step, names prefixed by the node's name; with a
    ``constant`` current every step reads it (no Split)."""
    formal = dict(zip(body.input, node.input))
    formal.update({f: a for f, a in zip(body.output, node.output) if a})
    split = next(inner for inner in body.node if inner.op_type == "Split")
    if constant:
        formal.update({step: constant for step in split.output})
    rename = lambda name: formal.get(name, f"{node.name}/{name}")  # noqa: E731
    expanded = []
    for inner in body.node:
        if inner.output and all(o in body.output and o not in formal for o in inner.output):
            continue  # an output the node does not use (the final potential)
        if constant and inner is split:
            continue
        copy = helper.make_node(inner.op_type, [rename(i) for i in inner.input],
                                [rename(o) for o in inner.output], name=f"{node.name}/{inner.name}")
        copy.attribute.extend(inner.attribute)
        expanded.append(copy)
    return expanded


def _scan(node: onnx.NodeProto, T: int, opset: int, elem_type: int, constant: str | None = None,
          sample: tuple[int, ...] = (), reset: str = "subtract"):
    """``node`` as one Scan over the T steps (see the module docstring)::

        xr = X viewed as [T, B, ...] ;  (V, Sr) = Scan(v0 expanded to [B, ...], xr) ;  Y = Sr viewed as X

    With a ``constant`` current [B, ...] the body reads it from the outer scope at every step and
    the Scan walks the step numbers 0 .. T-1 instead."""
    x, threshold, v0 = node.input
    p = node.name
    final = node.output[1] if len(node.output) > 1 and node.output[1] else f"{p}/final_potential"
    n = lambda op, ins, outs, **kw: helper.make_node(op, ins, [f"{p}/{outs}"], name=f"{p}/{outs}", **kw)  # noqa: E731
    const = lambda name, values: n("Constant", [], name,  # noqa: E731
                                   value=numpy_helper.from_array(np.asarray(values, np.int64), f"{p}/{name}"))
    rows = lambda shape, out: [n("Slice", [f"{p}/{shape}", f"{p}/one", f"{p}/end"], out)]  # noqa: E731
    nodes = [const("one", [1]), const("end", [np.iinfo(np.int64).max])]
    if constant:  # steps = 0..T-1; step shape = the constant's; spikes shape = [T*B, rest]
        nodes += [const("steps", np.arange(T)), const("time_head", [-1]), n("Shape", [constant], "step_shape"),
                  *rows("step_shape", "row_shape"),
                  n("Concat", [f"{p}/time_head", f"{p}/row_shape"], "shape", axis=0)]
    else:  # steps = X as [T, B, rest]; step shape = [B, rest]; spikes shape = X's
        nodes += [const("time_head", [T, -1]), n("Shape", [x], "shape"), *rows("shape", "row_shape"),
                  n("Concat", [f"{p}/time_head", f"{p}/row_shape"], "steps_shape", axis=0),
                  n("Reshape", [x, f"{p}/steps_shape"], "steps"),
                  n("Shape", [f"{p}/steps"], "steps_full_shape"), *rows("steps_full_shape", "step_shape")]
    body = _step_graph(p, threshold, opset, elem_type, constant, sample, reset)
    scan = helper.make_node("Scan", [f"{p}/v_init", f"{p}/steps"], [final, f"{p}/step_spikes"],
                            name=f"{p}/loop", num_scan_inputs=1, body=body)
    return nodes + [n("Expand", [v0, f"{p}/step_shape"], "v_init"), scan,
                    helper.make_node("Reshape", [f"{p}/step_spikes", f"{p}/shape"], [node.output[0]],
                                     name=f"{p}/spikes")]


def _step_graph(p: str, threshold: str, opset: int, elem_type: int, constant: str | None,
                sample: tuple[int, ...] = (), reset: str = "subtract") -> onnx.GraphProto:
    """Scan body: (v, x_t) -> (v_t, spikes_t), one :func:`.ops.if_neuron.step_nodes` step (x_t is
    the outer ``constant`` when given; the scanned step number is then unused); its names are
    prefixed ``<node>/step/`` so they cannot clash with the outer graph's."""
    local = lambda name: f"{p}/step/{name}"  # noqa: E731
    x = constant or local("x")
    nodes = if_neuron.step_nodes("", local("v"), x, opset, threshold=threshold, reset=reset)
    for i, inner in enumerate(nodes):
        if inner.op_type == "CastLike":  # type known here; a Cast keeps our name in profiles
            nodes[i] = inner = helper.make_node("Cast", inner.input[:1], inner.output, name=inner.name, to=elem_type)
        inner.name = local(inner.name)
        inner.input[:] = [i if i in (threshold, local("v"), x) else local(i) for i in inner.input]
        inner.output[:] = [local(o) for o in inner.output]
    step = [f"{p}/batch", *sample]  # one step: [B, *sample], B symbolic
    value = lambda name, t=elem_type, shape=step: helper.make_tensor_value_info(local(name), t, shape)  # noqa: E731
    scanned = value("t", onnx.TensorProto.INT64, []) if constant else value("x")
    return helper.make_graph(nodes, f"{p}/step", [value("v"), scanned], [value("m"), value("s")])
