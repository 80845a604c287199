"""Shared by the suite: the shipped models, their conversions made once per session, and a scratch
copy of the digits MLP for tests that write beside the model. (``tests/`` is on the import path
through pyproject's ``pythonpath``, for the graph helpers in ``graphs.py`` and ``op_graphs.py``.)"""

import shutil
from pathlib import Path

import pytest

import onnx2snn

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="session")
def converted():
    """``converted(name, T, data=True, **options)``: the shipped model ``models/NAME.onnx``
    converted at ``T`` with ``options`` (Config fields) on its calibration split, evaluated on its
    test split when ``data``; made once per session for each set of arguments and shared, so
    tests must only read the Result."""
    cache = {}

    def get(name: str, T: int, data: bool = True, **options) -> onnx2snn.Result:
        key = (name, T, data, tuple(sorted(options.items())))
        if key not in cache:
            base = MODELS / name
            cache[key] = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", onnx2snn.Config(T=T, **options),
                                          data=f"{base}.test.npz" if data else None)
        return cache[key]

    return get


@pytest.fixture
def shipped(tmp_path):
    """A copy of the shipped digits MLP with its sample data, in a scratch folder."""
    for suffix in (".onnx", ".calib.npz", ".test.npz"):
        shutil.copy(MODELS / f"digits_mlp{suffix}", tmp_path / f"digits_mlp{suffix}")
    return tmp_path / "digits_mlp.onnx"
