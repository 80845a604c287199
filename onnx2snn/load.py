"""Stage 1: load a model file safely and normalise its graph.

Normalisation makes every later stage simpler: opset >= 13, a symbolic batch dimension, constant
sub-graphs folded, Identity and inference-mode Dropout removed, nodes in topological order, and
shapes inferred.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
from onnx import external_data_helper, shape_inference, version_converter

from .errors import ModelLoadError

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
    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]
    for value in list(model.graph.input) + list(model.graph.output):
        _symbolic_batch(value)
    graph = gs.import_onnx(model)
    graph.fold_constants()
    graph.cleanup()
    _remove_identities(graph)
    graph.cleanup().toposort()
    _name_nodes(graph)
    out = gs.export_onnx(graph, do_type_check=False)
    out.ir_version = max(model.ir_version, 8)
    out.metadata_props.extend(model.metadata_props)
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    return infer_shapes(out)


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference; failures are logged, not fatal (later stages check what they need)."""
    try:
        return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference is best effort
        log.warning("shape inference failed (%s); continuing without inferred shapes", exc)
        return model


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
