"""One error hierarchy for everything the converter refuses.

Every error the user can fix derives from :class:`Onnx2SnnError`; the CLI prints its message as one
line and exits with status 2. Any other exception is a bug in onnx2snn (exit status 1).
Messages name the offending node, file or option and say what to do.
"""

from __future__ import annotations


class Onnx2SnnError(Exception):
    """Base class: a problem with the user's model, data or options (CLI exit status 2)."""


class ConfigError(Onnx2SnnError):
    """An option is out of range or options contradict each other."""


class ModelLoadError(Onnx2SnnError):
    """The model file cannot be read, parsed or normalised."""


class UnsupportedModelError(Onnx2SnnError):
    """The graph contains nodes that cannot become part of a spiking network.

    ``problems`` lists every offending node at once as ``(node name, op type, why, what to do)``.
    """

    def __init__(self, message: str, problems: list[tuple[str, str, str, str]] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            lines = [f"  - node '{n}' ({op}): {why}; {hint}" for n, op, why, hint in self.problems]
            message = message + "\n" + "\n".join(lines)
        super().__init__(message)


class DataError(Onnx2SnnError):
    """Calibration or evaluation data is missing, malformed or does not fit the model."""


class OutputError(Onnx2SnnError):
    """An output file cannot be written where it was asked to go."""


class CalibrationError(Onnx2SnnError):
    """Statistics or calibration produced unusable values (e.g. NaN activations)."""
