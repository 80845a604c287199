"""Registry of the ONNX ops onnx2snn knows, keyed by (domain, op type).

Every op is registered with a :class:`Role` that says how it can take part in a spiking network.
A node's *dynamic* inputs are the ones that vary over time steps (they depend on a spiking layer);
checks receive the set of dynamic tensor names and return why a node cannot act on spike trains
(or None when it can).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

import numpy as np
import onnx_graphsurgeon as gs


class Role(enum.Enum):
    ACTIVATION = "activation"  # ReLU and exact equivalents: becomes an IF neuron
    WEIGHTED = "weighted"  # has synapses (Conv, Gemm, MatMul): affine, a layer of the network
    LINEAR = "linear"  # affine in its dynamic inputs and keeps axis 0 (batch) apart
    MAXPOOL = "maxpool"  # max over a window: needs a spiking max-pool
    SHAPE = "shape"  # reads only the shape of its input (Shape, Size)
    NONLINEAR = "nonlinear"  # an activation that no IF neuron can reproduce
    BOUNDARY = "boundary"  # computed on firing rates between spiking layers (ops/boundary.py)


Check = Callable[[gs.Node, set], "str | None"]


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """How one op type takes part in conversion.

    ``check(node, dynamic)`` returns why this node cannot run on spike trains, or None.
    ``clip_max(node)`` (activations only) returns a trained upper clip value m, or None;
    ``alpha(node)`` a trained initial potential v(0) / theta (the shift of a clip-floor), or None.
    ``hint`` says what the user can do when the op is refused.

    Facts the later stages read (one place for each):
    ``macs(node, shapes)`` (weighted ops): multiply-accumulates of one sample, ``shapes`` holding the
    per-sample shapes of activations and the full shapes of constants (the energy estimate).
    ``scale_outputs(node, w, s)`` (weighted ops whose output channels a following per-channel
    affine op can be folded into): the weight ``w`` with output channel c scaled by ``s[c]``, or
    None when this node cannot take it (the batch-norm fold).
    ``elementwise``: a linear op that acts element by element (with broadcast constants), so a
    chain of them between a weighted op and its activation keeps the weighted op's channels.
    ``splits``: its outputs divide its input between them (one unit reaches one of the outputs).
    ``nir``: the kind of NIR node the op maps to in the NIR export (None: not expressible).
    """

    op_type: str
    role: Role
    check: Check | None = None
    clip_max: Callable[[gs.Node], "float | None"] | None = None
    alpha: Callable[[gs.Node], "float | None"] | None = None
    hint: str = ""
    domain: str = ""
    macs: Callable[[object, dict], float] | None = None
    scale_outputs: Callable[[gs.Node, np.ndarray, np.ndarray], "np.ndarray | None"] | None = None
    elementwise: bool = False
    splits: bool = False
    nir: str | None = None


_REGISTRY: dict[tuple[str, str], OpSpec] = {}


def register(*specs: OpSpec) -> None:
    """Add ``specs``; an op registered twice is a programming error (ValueError), as in onnx2torch."""
    for spec in specs:
        key = (spec.domain, spec.op_type)
        if key in _REGISTRY:
            raise ValueError(f"op {spec.domain or 'ai.onnx'}::{spec.op_type} is registered twice")
        _REGISTRY[key] = spec


def _key(node: gs.Node) -> tuple[str, str]:
    """(domain, op type) of ``node``, with the default ONNX domain spelled ""."""
    return ("" if node.domain in ("", "ai.onnx", None) else node.domain), node.op


def lookup(node: gs.Node) -> OpSpec | None:
    return _REGISTRY.get(_key(node))


def role_of(node) -> Role | None:
    """The registered role of ``node`` (a ``gs.Node`` or an ``onnx.NodeProto``), or None."""
    spec = lookup(node) if isinstance(node, gs.Node) else lookup_proto(node)
    return spec.role if spec else None


def lookup_proto(node) -> OpSpec | None:
    """:func:`lookup` for an ``onnx.NodeProto``."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    return _REGISTRY.get((domain, node.op_type))


_REFUSALS: dict[tuple[str, str], Callable[[gs.Node], tuple[str, str]]] = {}


def explain_refusal(op_type: str, explain: Callable[[gs.Node], tuple[str, str]]) -> None:
    """Register ``explain(node) -> (why, hint)`` for an op of the default domain that is *not*
    supported between spiking layers but can be told more precisely than "unknown" (e.g. a Floor
    that only a clip-floor chain would make convertible)."""
    _REFUSALS[("", op_type)] = explain


def refusal(node: gs.Node) -> tuple[str, str]:
    """(why, hint) for an unsupported ``node`` between spiking layers: its op's registered
    explanation, or the generic one."""
    explain = _REFUSALS.get(_key(node))
    if explain:
        return explain(node)
    return ("it lies between spiking layers and is not known to act linearly on spike trains",
            "replace it with a supported op or open an issue with the model")


# ---- helpers shared by the family files ---------------------------------------------------------

def const_value(tensor) -> np.ndarray | None:
    """The value of a constant tensor input, or None when it is not constant."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    return None


def const_scalar(tensor) -> float | None:
    """The value of a constant, finite, one-element tensor input, or None."""
    value = const_value(tensor) if tensor is not None else None
    if value is None or value.size != 1 or not np.isfinite(value).all():
        return None
    return float(value.reshape(()))


def is_dynamic(tensor, dynamic: set) -> bool:
    return tensor is not None and getattr(tensor, "name", "") in dynamic


def only_first_dynamic(node: gs.Node, dynamic: set) -> str | None:
    """Check for ops whose parameters (inputs 1..) must not vary over time."""
    if any(is_dynamic(t, dynamic) for t in node.inputs[1:]):
        return "its weights/parameters depend on spiking activity (a product of two signals)"
    return None


def axis_not_batch(axes, rank: int | None) -> bool:
    """True when none of ``axes`` (possibly negative) is axis 0."""
    for a in np.atleast_1d(axes).tolist():
        if a == 0 or (rank is not None and a + rank == 0):
            return False
        if a < 0 and rank is None:
            return False
    return True


def rank_of(tensor) -> int | None:
    shape = getattr(tensor, "shape", None)
    return None if shape is None else len(shape)
