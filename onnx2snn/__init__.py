"""onnx2snn: convert ReLU networks in ONNX into spiking networks of integrate-and-fire neurons.

    >>> import onnx2snn
    >>> result = onnx2snn.convert("models/digits_cnn.onnx", "models/digits_cnn.calib.npz",
    ...                           onnx2snn.Config(T=16), data="models/digits_cnn.test.npz")
    >>> onnx2snn.save_model(result.snn, "digits_cnn.snn.onnx")
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
from .pipeline import Result, convert
from .simulation.evaluation import Evaluation, evaluate
from .simulation.runtime import simulate

__all__ = [
    "CalibrationError", "Config", "ConfigError", "DataError", "Evaluation", "Granularity",
    "ModelLoadError", "Onnx2SnnError", "OutputError", "Result", "UnsupportedModelError",
    "__version__", "convert", "evaluate", "save_model", "simulate",
]
