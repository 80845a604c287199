"""Stage 8: write results. Every file is written to a temporary name in the target folder and
renamed into place only when complete, so an interrupted run leaves no partial file."""

from ..snn.unrolled import unroll
from .files import atomic_write, save_model

__all__ = ["atomic_write", "save_model", "unroll"]
