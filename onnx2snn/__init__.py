"""onnx2snn: convert ReLU networks in ONNX into spiking networks of integrate-and-fire neurons.

    >>> import onnx2snn
    >>> result = onnx2snn.convert("models/digits_cnn.onnx", "models/digits_cnn.calib.npz",
    ...                           onnx2snn.Config(T=16), data="models/digits_cnn.test.npz")
    >>> onnx2snn.save_model(result.snn, "digits_cnn.snn.onnx")

Staged, for several conversions of one model (statistics collected once)::

    >>> prepared = onnx2snn.prepare("models/digits_cnn.onnx", "models/digits_cnn.calib.npz")
    >>> stages = {T: prepared.at(onnx2snn.Config(T=T)) for T in (4, 8)}
"""

from ._version import __version__
from .config import Config, Granularity
from .errors import (
    CalibrationError,
    ConfigError,
    DataError,
    ModelLoadError,
    Onnx2SnnError,
    OutputError,
    UnsupportedModelError,
)
from .export import save_model
from .pipeline import Prepared, Result, Stage, convert, prepare
from .simulation.evaluation import Evaluation, evaluate
from .simulation.runtime import simulate

__all__ = [
    "CalibrationError", "Config", "ConfigError", "DataError", "Evaluation", "Granularity",
    "ModelLoadError", "Onnx2SnnError", "OutputError", "Prepared", "Result", "Stage", "UnsupportedModelError",
    "__version__", "convert", "evaluate", "prepare", "save_model", "simulate",
]
