"""Models above protobuf's 2 GB limit: they cannot be serialised in one piece, so they are
written with external data (weights in a ``.data`` file beside the model), sessions are created
from such a file, and shape inference runs on a copy whose weights are stubs (it needs shapes
only). Below the limit nothing changes.
"""

from __future__ import annotations

import os
import tempfile

import onnx
from onnx import TensorProto

LIMIT = 2_000_000_000  # bytes; a little under 2 GiB, protobuf's hard limit
STUB_BYTES = 1024  # initializers larger than this are stubbed for shape inference


def is_large(model: onnx.ModelProto) -> bool:
    return model.ByteSize() >= LIMIT


def stub_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose large initializers keep name, type and dims but no data."""
    light = onnx.ModelProto()
    light.CopyFrom(model)
    for tensor in light.graph.initializer:
        if tensor.ByteSize() > STUB_BYTES:
            dims, dtype, name = list(tensor.dims), tensor.data_type, tensor.name
            tensor.Clear()
            tensor.name, tensor.data_type = name, dtype
            tensor.dims.extend(dims)
            tensor.data_location = TensorProto.EXTERNAL
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", "stub.data"
    return light


def save_external(model: onnx.ModelProto, path: str, location: str) -> None:
    """Write ``model`` to ``path`` with initializers above STUB_BYTES in ``location`` (beside path).
    ``model`` is not modified."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(copy, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=STUB_BYTES)


class SessionFile:
    """A temporary folder holding a large model with external data, for onnxruntime to load."""

    def __init__(self, model: onnx.ModelProto):
        self._dir = tempfile.TemporaryDirectory(prefix="onnx2snn-")
        self.path = os.path.join(self._dir.name, "model.onnx")
        save_external(model, self.path, "model.onnx.data")

    def close(self) -> None:
        self._dir.cleanup()
