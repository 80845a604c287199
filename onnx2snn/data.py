"""Calibration and evaluation data: loading, validation against the model, batching.

A data set is a dict of model-input arrays (all with the same number of samples N on axis 0) and
optional integer labels ``y``. An ``.npz`` file holds the arrays by model input name, or ``x`` for
a model with one input, and optionally ``y``; an ``.npy`` file is the input of a single-input model
(no labels); a folder of images is read by :mod:`.images`. Integer pixel arrays are cast exactly to
the model's floating-point input type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .errors import DataError
from .images import ImageOptions, read_folder


@dataclasses.dataclass(frozen=True)
class Dataset:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
        for start in range(0, len(self), batch_size):
            part = slice(start, min(start + batch_size, len(self)))
            yield part, {k: v[part] for k, v in self.inputs.items()}

    def head(self, n: int | None) -> Dataset:
        """The first ``n`` samples (all when n is None or larger than the set)."""
        if n is None or n >= len(self):
            return self
        labels = None if self.labels is None else self.labels[:n]
        return Dataset({k: v[:n] for k, v in self.inputs.items()}, labels, f"{self.source}[:{n}]")


def model_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are real inputs (not initializers with defaults)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def load_npz(path: str | Path, model: onnx.ModelProto, what: str = "data") -> Dataset:
    """Load ``path`` (.npz) and validate it against the inputs of ``model``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file '{path}' does not exist; pass an .npz with arrays "
                        "'x' (model input) and optionally 'y' (labels)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as exc:
        raise DataError(f"{what} file '{path}' is not a readable .npz archive ({exc})") from None
    return from_arrays(arrays, model, source=str(path))


def from_arrays(arrays: dict[str, np.ndarray], model: onnx.ModelProto, source: str = "arrays") -> Dataset:
    """Build a validated Dataset from named arrays (model input names or ``x``; ``y`` labels)."""
    specs = model_inputs(model)
    inputs = {}
    for spec in specs:
        key = spec.name if spec.name in arrays else ("x" if len(specs) == 1 and "x" in arrays else None)
        if key is None:
            raise DataError(f"{source}: no array for model input '{spec.name}' (found "
                            f"{sorted(arrays)}); name it '{spec.name}'" + (" or 'x'" if len(specs) == 1 else ""))
        inputs[spec.name] = _check_input(np.asarray(arrays[key]), spec, source, key)
    counts = {len(v) for v in inputs.values()}
    if len(counts) != 1:
        raise DataError(f"{source}: inputs have different numbers of samples {sorted(counts)}")
    labels = arrays.get("y")
    if labels is not None:
        labels = _check_labels(np.asarray(labels), counts.pop(), source)
    return Dataset(inputs, labels, source)


def load_npy(path: str | Path, model: onnx.ModelProto, what: str = "data") -> Dataset:
    """Load ``path`` (.npy, the input of a single-input model, no labels)."""
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{what} file '{path}' is not a readable .npy array ({exc})") from None
    return from_arrays({"x": x}, model, source=str(path))


def load_path(path: str | Path, model: onnx.ModelProto, what: str = "data",
              images: ImageOptions | None = None) -> Dataset:
    """An .npz archive, an .npy array or a folder of images (see :mod:`.images`)."""
    path = Path(path)
    if path.is_dir():
        specs = model_inputs(model)
        dims = [d.dim_value or None for d in specs[0].type.tensor_type.shape.dim] if len(specs) == 1 else []
        return from_arrays(read_folder(path, dims, what, images or ImageOptions()), model, source=str(path))
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise DataError(f"{what} file '{path}' does not exist")
        return load_npy(path, model, what)
    return load_npz(path, model, what)


def as_dataset(value, model: onnx.ModelProto, what: str, images: ImageOptions | None = None) -> Dataset:
    """Accept a Dataset, a dict of arrays, a bare array (single-input models), or a path to an
    .npz, an .npy or a folder of images."""
    if isinstance(value, Dataset):
        return value
    if isinstance(value, np.ndarray):
        return from_arrays({"x": value}, model, what)
    if isinstance(value, dict):
        return from_arrays(value, model, what)
    return load_path(value, model, what, images)


def _check_input(x: np.ndarray, spec: onnx.ValueInfoProto, source: str, key: str) -> np.ndarray:
    tensor_type = spec.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    if x.size == 0 or x.ndim == 0:
        raise DataError(f"{source}: '{key}' holds no samples; it needs shape [N, ...] with N >= 1")
    if dims and (x.ndim != len(dims) or any(d and d != s for d, s in zip(dims[1:], x.shape[1:]))):
        want = ["N"] + [d if d else "?" for d in dims[1:]]
        raise DataError(f"{source}: '{key}' has shape {list(x.shape)} but model input "
                        f"'{spec.name}' expects {want}; reshape the data to the model's layout")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{source}: '{key}' has dtype {x.dtype}; store numbers (float or int)")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise DataError(f"{source}: '{key}' contains {bad} NaN/Inf value(s); clean the data")
    return x.astype(dtype, copy=False) if np.issubdtype(dtype, np.floating) or dtype != x.dtype else x


def _check_labels(y: np.ndarray, n: int, source: str) -> np.ndarray:
    """Integer class indices (cast exactly from integral floats), or float regression targets."""
    if len(y) != n or y.ndim not in (1, 2):
        raise DataError(f"{source}: labels 'y' have shape {list(y.shape)}; expected [{n}] (one class "
                        f"per sample) or [{n}, k] (regression targets)")
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise DataError(f"{source}: labels 'y' must be numbers, got {y.dtype}")
    if not np.isfinite(y).all():
        raise DataError(f"{source}: labels 'y' contain NaN/Inf; clean the data")
    if np.issubdtype(y.dtype, np.floating):
        if y.ndim == 2 or not np.all(np.mod(y, 1) == 0):
            return y.astype(np.float64)  # regression targets
        y = y.astype(np.int64)
    return y.astype(np.int64, copy=False)
