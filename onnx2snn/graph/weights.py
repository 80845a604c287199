"""Weights held once: large initializers live in a :class:`WeightStore`, protos carry stubs.

A conversion copies its model many times (normalisation, the SNN rewrite, phase 2's segments,
exposed outputs, lowered loops) and hands each copy to onnxruntime. With the weights inside every
copy, a 500 MB VGG costs several GB before any activation is computed. So a conversion keeps each
initializer above :data:`STUB_BYTES` exactly once, as a read-only numpy array in a store, and its
protos are *light*: such an initializer is a stub with name, type and dims whose ONNX external-data
location names the store entry (``onnx2snn-weights-<store>/<entry>``). Sessions receive the arrays
with ``SessionOptions.add_external_initializers`` (onnxruntime uses them in place, no copy), passes
read them through :func:`import_graph`, and :func:`attach` makes a self-contained proto for files
and users. A light proto is valid while its store lives (the conversion's :class:`~.pipeline.Result`
holds it); stores are found by location through a weak registry.

A full proto (every initializer inline) is handled exactly as before; above protobuf's 2 GB limit
it cannot be serialised, so :func:`serializable` gives sessions a light copy in a temporary store.
"""

from __future__ import annotations

import itertools
import os
import weakref

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, numpy_helper
from onnx_graphsurgeon.ir.tensor import LazyValues

from ..errors import ModelLoadError

STUB_BYTES = 4096  # initializers above this size live in the store; smaller ones stay inline
LIMIT = 2_000_000_000  # bytes; a little under 2 GiB, protobuf's hard limit for one message
_PREFIX = "onnx2snn-weights-"
_STORES: "weakref.WeakValueDictionary[str, WeightStore]" = weakref.WeakValueDictionary()
_ids = itertools.count()


class WeightStore:
    """Read-only arrays by entry location; see the module docstring."""

    def __init__(self):
        self.key = f"{_PREFIX}{os.getpid()}-{next(_ids)}"
        self._arrays: dict[str, np.ndarray] = {}
        self._by_id: dict[int, str] = {}  # id of a held array -> its location
        self._entries = itertools.count()
        _STORES[self.key] = self

    def add(self, array: np.ndarray) -> str:
        """Keep ``array`` (contiguous, read-only from now on); returns its location."""
        array = np.ascontiguousarray(array)
        array.flags.writeable = False
        location = f"{self.key}/{next(self._entries)}"
        self._arrays[location] = array
        self._by_id[id(array)] = location
        return location

    def array(self, location: str) -> np.ndarray:
        return self._arrays[location]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    def detach(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """A light copy of ``model``: inline initializers above STUB_BYTES move into this store
        (stubs of any live store stay as they are). ``model`` is not modified."""
        light = _without_initializers(model)
        for tensor in model.graph.initializer:
            if not is_stub(tensor) and _nbytes(tensor) > STUB_BYTES:
                tensor = stub(tensor, self.add(numpy_helper.to_array(tensor)))
            light.graph.initializer.append(tensor)
        return light

    def prune(self, *models: onnx.ModelProto) -> None:
        """Forget the entries that none of ``models`` refers to."""
        used = {_location(t) for m in models for t in m.graph.initializer if is_stub(t)}
        for location in [loc for loc in self._arrays if loc not in used]:
            del self._by_id[id(self._arrays.pop(location))]

    def location_of(self, array: np.ndarray) -> str | None:
        """The location of ``array`` if it is one of this store's arrays (the object itself)."""
        return self._by_id.get(id(array))


def store_of(model: onnx.ModelProto) -> WeightStore | None:
    """The live store that ``model``'s stubs refer to (the first one found), or None."""
    for tensor in model.graph.initializer:
        if is_stub(tensor):
            store = _STORES.get(_location(tensor).split("/")[0])
            if store is not None:
                return store
    return None


def stub(tensor: TensorProto, location: str) -> TensorProto:
    """Name, type and dims of ``tensor`` with its data at external ``location``."""
    out = TensorProto(name=tensor.name, data_type=tensor.data_type, dims=list(tensor.dims),
                      data_location=TensorProto.EXTERNAL)
    entry = out.external_data.add()
    entry.key, entry.value = "location", location
    return out


def is_stub(tensor: TensorProto) -> bool:
    """Whether ``tensor`` is a stub of a weight store (live or not)."""
    return tensor.data_location == TensorProto.EXTERNAL and _location(tensor).startswith(_PREFIX)


def to_array(tensor: TensorProto) -> np.ndarray:
    """The values of an initializer, inline or stubbed (a read-only view of the store's array)."""
    if is_stub(tensor):
        return _resolve(tensor)
    return numpy_helper.to_array(tensor)


def attach(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every stub replaced by its data: a new proto, or ``model`` itself when it
    has no stubs (then nothing is copied)."""
    if not any(is_stub(t) for t in model.graph.initializer):
        return model
    full = _without_initializers(model)
    for tensor in model.graph.initializer:
        full.graph.initializer.append(numpy_helper.from_array(_resolve(tensor), tensor.name)
                                      if is_stub(tensor) else tensor)
    return full


def external(model: onnx.ModelProto) -> tuple[list[str], list[np.ndarray]]:
    """Names and arrays of the stubbed initializers of ``model``, for a session."""
    stubs = [t for t in model.graph.initializer if is_stub(t)]
    return [t.name for t in stubs], [_resolve(t) for t in stubs]


def serializable(model: onnx.ModelProto) -> tuple[onnx.ModelProto, WeightStore | None]:
    """``model`` itself when it can be serialised in one piece, else a light copy and the
    temporary store holding its weights (keep the store as long as the copy is used)."""
    if not is_large(model):
        return model, None
    store = WeightStore()
    return store.detach(model), store


def is_large(model: onnx.ModelProto) -> bool:
    return model.ByteSize() >= LIMIT


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all initializers, stubbed or inline."""
    return sum(_nbytes(t) for t in model.graph.initializer)


def stub_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose large initializers are stubs with no store behind them: for shape inference,
    which reads dims only (its data propagation reads only small constants)."""
    light = _without_initializers(model)
    for tensor in model.graph.initializer:
        light.graph.initializer.append(tensor if is_stub(tensor) or _nbytes(tensor) <= STUB_BYTES
                                       else stub(tensor, f"{_PREFIX}none/{tensor.name}"))
    return light


def import_graph(model: onnx.ModelProto) -> gs.Graph:
    """``gs.import_onnx`` whose stubbed constants read their values from the store (views, no
    copy); pair with :func:`export_graph`, which stubs them again."""
    graph = gs.import_onnx(model)
    for tensor in graph.tensors().values():
        lazy = getattr(tensor, "_values", None)
        if isinstance(tensor, gs.Constant) and isinstance(lazy, LazyValues) and is_stub(lazy.tensor):
            tensor._values = _StoredValues(lazy.tensor)
    return graph


def load_foldable(graph: gs.Graph) -> None:
    """Give the stubbed constants that feed a node of constants only (what constant folding
    evaluates, e.g. a weight shared through Identity) their values, so that folding can run them;
    the others stay stubs."""
    for node in graph.nodes:
        if node.inputs and all(isinstance(t, gs.Constant) for t in node.inputs):
            for tensor in node.inputs:
                tensor.values  # noqa: B018 - loads a stub's array (a view of the store's)


def export_graph(graph: gs.Graph, store: WeightStore | None = None) -> onnx.ModelProto:
    """``gs.export_onnx`` of a graph from :func:`import_graph`: constants holding a store's array
    are exported as stubs; new constants above STUB_BYTES go into ``store`` (default: the store of
    the graph's stubs; they stay inline when the graph has none)."""
    constants = [t for t in graph.tensors().values() if isinstance(t, gs.Constant)]
    found = None
    for tensor in constants:
        values = tensor._values
        if isinstance(values, np.ndarray):
            owner, location = _owner(values)
            if owner is not None:
                tensor._values = _StoredValues(stub(_proto_of(tensor, values), location))
                values = tensor._values
        if found is None and isinstance(values, _StoredValues):
            found = _STORES.get(_location(values.tensor).split("/")[0])
    store = store or found
    for tensor in constants:
        values = tensor._values
        if store is not None and isinstance(values, np.ndarray) and values.nbytes > STUB_BYTES:
            tensor._values = _StoredValues(stub(_proto_of(tensor, values), store.add(values)))
    return gs.export_onnx(graph, do_type_check=False)


class _StoredValues(LazyValues):
    """Lazy values of a stub: exported as the stub, loaded as a read-only view of the stored array."""

    def load(self):
        return _resolve(self.tensor)


def _owner(array: np.ndarray) -> tuple[WeightStore | None, str | None]:
    for store in list(_STORES.values()):
        location = store.location_of(array)
        if location is not None:
            return store, location
    return None, None


def _proto_of(tensor: gs.Constant, values: np.ndarray) -> TensorProto:
    return TensorProto(name=tensor.name, data_type=onnx.helper.np_dtype_to_tensor_dtype(values.dtype),
                       dims=list(values.shape))


def _resolve(tensor: TensorProto) -> np.ndarray:
    location = _location(tensor)
    store = _STORES.get(location.split("/")[0])
    if store is None:
        raise ModelLoadError(f"initializer '{tensor.name}' refers to weights that are no longer held "
                             f"({location}); keep the conversion's Result alive, or use Result.snn / "
                             "Result.ann, which are self-contained")
    return store.array(location)


def _location(tensor: TensorProto) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def _nbytes(tensor: TensorProto) -> int:
    if tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        return tensor.ByteSize()
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``model`` (protobuf ``CopyFrom``): the one way passes copy a model."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def without_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with an empty graph (its opsets, functions, metadata and so on)."""
    out = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(out, field, value)
    return out


def _without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` without graph initializers, made field by field so that they are never
    copied."""
    out = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(out, field, value)
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            _copy_field(out.graph, field, value)
    return out


def _copy_field(message, field, value) -> None:
    if hasattr(value, "extend"):  # a repeated field
        getattr(message, field.name).extend(value)
    elif hasattr(value, "CopyFrom"):  # a message
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)
