"""Supported ONNX ops: a registry keyed by op type, one file per op family, and the IF neuron."""

from . import activations, boundary, clip_floor, linear, pooling, shape  # noqa: F401 - importing registers the ops
from .registry import OpSpec, Role, known_ops, lookup, lookup_proto, refusal

__all__ = ["OpSpec", "Role", "known_ops", "lookup", "lookup_proto", "refusal"]
