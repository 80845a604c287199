"""Shape family: ops that move or select values without arithmetic.

They are linear (each output is a copy of one input element, or a constant pad value), so they act
on spike trains unchanged, provided axis 0 -- which holds T*B rows, time-major -- is neither
mixed with other axes nor sliced, padded or transposed.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from .registry import OpSpec, Role, axis_not_batch, const_value, is_dynamic, rank_of, register

_HINT = "export the model with a dynamic batch dimension and keep the batch axis first"
_BATCH = "it moves or mixes the batch axis 0, which holds the time steps"


def _axis_attr_check(default):
    def check(node, dynamic):
        axis = node.attrs.get("axis", default)
        return None if axis_not_batch(axis, rank_of(node.inputs[0])) else _BATCH
    return check


def _axes_input_check(index, attr="axes"):
    def check(node, dynamic):
        axes = node.attrs.get(attr)
        if axes is None and len(node.inputs) > index and node.inputs[index].name:
            axes = const_value(node.inputs[index])
            if axes is None:
                return "its axes are not constant"
        if axes is None:
            return None if node.op == "Unsqueeze" else "it acts on all axes, including the batch axis"
        return None if axis_not_batch(axes, rank_of(node.inputs[0])) else _BATCH
    return check


def _reshape_check(node, dynamic):
    shape = const_value(node.inputs[1])
    if shape is None:
        return None  # computed from the signal's own Shape: keeps its leading dimension
    if shape.size == 0 or int(shape[0]) in (0, -1):
        return None
    return f"its target shape {shape.tolist()} fixes the batch dimension to {int(shape[0])}"


def _transpose_check(node, dynamic):
    perm = node.attrs.get("perm")
    if perm is None or int(perm[0]) != 0:
        return _BATCH
    return None


def _slice_check(node, dynamic):
    if any(is_dynamic(t, dynamic) for t in node.inputs[1:]):
        return "its bounds depend on spiking activity"
    axes = const_value(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3].name else None
    starts = const_value(node.inputs[1])
    if axes is None:
        if starts is None:
            return "its bounds are not constant"
        axes = np.arange(starts.size)
    return None if axis_not_batch(axes, rank_of(node.inputs[0])) else _BATCH


def _pad_check(node, dynamic):
    pads = const_value(node.inputs[1]) if len(node.inputs) > 1 else None
    if pads is None:
        return "its pads are not constant"
    axes = const_value(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3].name else None
    if axes is not None:
        return None if axis_not_batch(axes, rank_of(node.inputs[0])) else _BATCH
    half = pads.size // 2
    return None if pads[0] == 0 and pads[half] == 0 else _BATCH


def _gather_check(node, dynamic):
    if const_value(node.inputs[1]) is None:
        return "its indices are not constant"
    return _axis_attr_check(0)(node, dynamic)


_FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}


def _cast_check(node, dynamic):
    if int(node.attrs.get("to", 0)) not in _FLOATS:
        return f"it casts spikes to {helper.tensor_dtype_to_np_dtype(node.attrs['to'])}"
    return None


register(
    OpSpec("Flatten", Role.LINEAR, check=_axis_attr_check(1), hint=_HINT, nir="Flatten"),
    OpSpec("Reshape", Role.LINEAR, check=_reshape_check, hint=_HINT, nir="Flatten"),
    OpSpec("Squeeze", Role.LINEAR, check=_axes_input_check(1), hint=_HINT),
    OpSpec("Unsqueeze", Role.LINEAR, check=_axes_input_check(1), hint=_HINT),
    OpSpec("Transpose", Role.LINEAR, check=_transpose_check, hint=_HINT),
    OpSpec("Concat", Role.LINEAR, check=_axis_attr_check(None), hint=_HINT),
    OpSpec("Split", Role.LINEAR, check=_axis_attr_check(0), hint=_HINT, splits=True),
    OpSpec("Slice", Role.LINEAR, check=_slice_check, hint=_HINT),
    OpSpec("Pad", Role.LINEAR, check=_pad_check, hint=_HINT),
    OpSpec("Gather", Role.LINEAR, check=_gather_check, hint=_HINT),
    OpSpec("Cast", Role.LINEAR, check=_cast_check, hint="keep spike tensors in floating point"),
    OpSpec("ReduceMean", Role.LINEAR, check=_axes_input_check(1), hint=_HINT),
    OpSpec("ReduceSum", Role.LINEAR, check=_axes_input_check(1), hint=_HINT),
    OpSpec("Shape", Role.SHAPE),
    OpSpec("Size", Role.SHAPE),
)
