"""Supported ONNX ops: a registry keyed by op type, one file per op family, and the IF neuron."""

from . import activations, boundary, clip_floor, linear, pooling, shape  # noqa: F401 - importing registers the ops
from .registry import OpSpec, Role, lookup, lookup_proto, refusal, role_of

__all__ = ["OpSpec", "Role", "lookup", "lookup_proto", "refusal", "role_of"]
