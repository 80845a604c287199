"""Stage 1: load a model file safely and normalise its graph.

Normalisation makes every later stage simpler: opset >= 13, a symbolic batch dimension, constant
sub-graphs folded, BatchNormalization folded into the Conv/Gemm before it where possible,
Identity and inference-mode Dropout removed, clip-floor (QCFS) activation chains fused into one
``ClipFloor`` node each (:mod:`.ops.clip_floor`), nodes in topological order, and shapes inferred.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import external_data_helper, shape_inference, version_converter

from ..errors import ModelLoadError
from ..ops import clip_floor
from . import weights
from .fold import fold_batchnorm

log = logging.getLogger(__name__)

MIN_OPSET = 13
BATCH = "N"


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read ``path`` (and its external data, which must lie inside the model's folder)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file '{path}' does not exist; check the path")
    if not path.is_file():
        raise ModelLoadError(f"model path '{path}' is not a file; pass the .onnx file itself")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file '{path}' is empty; re-export the model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types
        raise ModelLoadError(f"'{path}' is not a valid ONNX model ({type(exc).__name__}); "
                             "re-export it or check that the download is complete") from None
    if not model.graph.node or model.ir_version <= 0:
        raise ModelLoadError(f"'{path}' does not contain an ONNX graph; pass an exported .onnx model")
    _load_external_data(model, path.parent)
    return model


def _load_external_data(model: onnx.ModelProto, base: Path) -> None:
    base = base.resolve()
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        location = Path(info.location)
        target = (base / location).resolve()
        if location.is_absolute() or base not in target.parents:
            raise ModelLoadError(
                f"tensor '{tensor.name}' points to external data '{info.location}' outside the "
                f"model's folder; refusing to read it (move the data file beside the model)")
        if not target.is_file():
            raise ModelLoadError(
                f"tensor '{tensor.name}' needs external data file '{target}', which is missing; "
                "copy it beside the model")
    try:
        external_data_helper.load_external_data_for_model(model, str(base))
    except Exception as exc:
        raise ModelLoadError(f"external data of the model cannot be read: {exc}") from None


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a normalised copy of ``model`` (see module docstring)."""
    model = _upgrade_opset(model)
    batch = _static_batch(model)
    first_dims = _first_dims(infer_shapes(model)) if batch is not None else {}
    model = weights.copy_model(model)
    del model.graph.value_info[:]
    for value in list(model.graph.input) + list(model.graph.output):
        _symbolic_batch(value)
    graph = weights.import_graph(model)
    weights.load_foldable(graph)
    severity = gs.logger.G_LOGGER.severity  # its advice to cap folded sizes does not apply:
    gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.ERROR  # large results go to the weight store
    try:
        graph.fold_constants()
    finally:
        gs.logger.G_LOGGER.severity = severity
    graph.cleanup()
    if batch is not None:
        _free_batch_in_reshapes(graph, batch, first_dims)
    fold_batchnorm(graph)
    _remove_identities(graph)
    clip_floor.fuse(graph)
    graph.cleanup().toposort()
    _name_nodes(graph)
    out = weights.export_graph(graph)
    clip_floor.install(out)
    restore_output_types(out, model)
    out.ir_version = max(model.ir_version, 8)
    out.metadata_props.extend(model.metadata_props)
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    return infer_shapes(out)


def restore_output_types(model: onnx.ModelProto, reference: onnx.ModelProto) -> None:
    """Give graph outputs the types they have in ``reference`` (onnx-graphsurgeon keeps tensor types
    only, so sequence/map outputs such as ZipMap's would otherwise become undefined)."""
    types = {o.name: o.type for o in reference.graph.output}
    for out in model.graph.output:
        if out.name in types:
            out.type.CopyFrom(types[out.name])


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference; failures are logged, not fatal (later stages check what they need).
    It runs on a copy whose large initializers are stubs (it needs their dims only, so a model's
    weights are never copied for it) and the inferred types are copied back."""
    try:
        light = shape_inference.infer_shapes(weights.stub_copy(model), strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference is best effort
        log.warning("shape inference failed (%s); continuing without inferred shapes", exc)
        return model
    out = weights.copy_model(model)
    del out.graph.value_info[:]
    out.graph.value_info.extend(light.graph.value_info)
    for mine, inferred in zip(out.graph.output, light.graph.output):
        mine.type.CopyFrom(inferred.type)
    return out


def sample_shapes(model: onnx.ModelProto, infer: bool = True) -> dict[str, tuple[int, ...]]:
    """Shape of one sample (batch axis dropped) of every tensor that :func:`infer_shapes` types
    (``infer=False``: that the model's value infos already type); unknown dimensions are 0.
    Initializers are not included."""
    g = (infer_shapes(model) if infer else model).graph
    return {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim[1:])
            for v in list(g.value_info) + list(g.input) + list(g.output)}


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    if opset >= MIN_OPSET:
        return model
    log.info("converting the model from opset %d to %d", opset, MIN_OPSET)
    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:
        raise ModelLoadError(f"the model uses opset {opset}; converting it to opset {MIN_OPSET} "
                             f"failed ({exc}); re-export it with opset >= {MIN_OPSET}") from None


def _symbolic_batch(value: onnx.ValueInfoProto) -> None:
    """Make dimension 0 of a graph input/output symbolic, so T*B rows can flow through."""
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return
    dims = value.type.tensor_type.shape.dim
    if len(dims) >= 1 and not dims[0].dim_param:
        dims[0].dim_param = BATCH


def _static_batch(model: onnx.ModelProto) -> int | None:
    """The fixed batch size all graph inputs share, or None (dynamic or inconsistent)."""
    inits = {t.name for t in model.graph.initializer}
    firsts = set()
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
        if value.name in inits:
            continue
        if not dims or not dims[0].HasField("dim_value"):
            return None
        firsts.add(dims[0].dim_value)
    return firsts.pop() if len(firsts) == 1 else None


def _first_dims(model: onnx.ModelProto) -> dict[str, int]:
    """Inferred static dimension 0 of every tensor that has one."""
    out = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            out[value.name] = dims[0].dim_value
    return out


def _free_batch_in_reshapes(graph: gs.Graph, batch: int, first_dims: dict[str, int]) -> None:
    """A model exported with a fixed batch B often reshapes to [B, ...]; make that [0, ...] (copy
    dimension 0 from the input) where the reshaped tensor has B rows, so any batch size works."""
    for node in graph.nodes:
        if node.op != "Reshape" or not isinstance(node.inputs[1], gs.Constant):
            continue
        shape = np.asarray(node.inputs[1].values)
        if shape.size and shape[0] == batch and first_dims.get(node.inputs[0].name) == batch:
            fixed = shape.copy()
            fixed[0] = 0
            node.inputs[1] = gs.Constant(f"{node.name}/batch_free_shape", fixed)
            node.attrs.pop("allowzero", None)
            log.info("Reshape '%s': fixed batch %d in its target shape made dynamic", node.name, batch)


def _remove_identities(graph: gs.Graph) -> None:
    """Bypass Identity and inference-mode Dropout nodes, keeping graph output names."""
    for node in list(graph.nodes):
        if node.op not in ("Identity", "Dropout") or (node.domain or "") not in ("", "ai.onnx"):
            continue
        if node.op == "Dropout" and (len(node.outputs) > 1 and node.outputs[1].outputs):
            continue  # its mask is used: keep it (the support check will report it)
        src, dst = node.inputs[0], node.outputs[0]
        for consumer in list(dst.outputs):
            consumer.inputs[consumer.inputs.index(dst)] = src
        if dst in graph.outputs:
            if src in graph.inputs or src in graph.outputs or isinstance(src, gs.Constant):
                continue  # output is a plain copy of an input: keep the node
            graph.outputs[graph.outputs.index(dst)] = src
            src.name, dst.name = dst.name, dst.name + "/removed"
        node.outputs.clear()
        node.inputs.clear()


def _name_nodes(graph: gs.Graph) -> None:
    """Give every node a unique, deterministic name (generated names derive from them)."""
    seen: set[str] = set()
    for index, node in enumerate(graph.nodes):
        name = node.name or f"{node.op}_{index}"
        while name in seen:
            name = f"{name}_{index}"
        node.name = name
        seen.add(name)
