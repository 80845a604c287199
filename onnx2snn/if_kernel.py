"""IF simulation for phase 2: spike counts (and spikes) of one layer, in onnxruntime.

The kernel graph is built from the IFNeuron function's own step (:func:`.ops.if_neuron.step_nodes`),
so it performs the same float operations in the same order and gives the same spikes as the
converted model::

    x_t <- x_t + b                  (only with a phase-2 bias current b, as the converted Add)
    u_t = v_{t-1} + x_t ;  f_t = [u_t >= theta] ;  v_t = u_t - theta * f_t ;  v_{-1} = v0

and returns ``C = sum_t f_t`` (float, exact for T < 2^24) and, when asked, ``F`` = the booleans
f_t stacked time-major [T*B, ...]. Unlike the converted model it takes the T steps as T inputs
(views of one array, no split copy), a constant current (direct encoding) as one input used at
every step, and never materialises theta * f as a [T*B, ...] train: about half the memory traffic
of running IFNeuron and counting its output.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from .config import Config
from .ops import if_neuron
from .runtime import make_session


def kernel_model(T: int, constant: bool, bias: bool, keep: bool, opset: int = 17) -> onnx.ModelProto:
    """Inputs ``x0`` .. ``x{T-1}`` (or only ``x0`` when ``constant``), ``threshold``, ``v0`` and
    (with ``bias``) ``bias``; outputs ``C`` and (with ``keep``) ``F``. Dynamic shapes."""
    steps = ["x0"] * T if constant else [f"x{t}" for t in range(T)]
    nodes, inputs = [], sorted(set(steps), key=lambda n: int(n[1:]))
    if bias:
        nodes += [helper.make_node("Add", [x, "bias"], [f"{x}b"]) for x in inputs]
        steps = [f"{x}b" for x in steps]
    v = "v0"
    for t, x in enumerate(steps):
        nodes += if_neuron.step_nodes(t, v, x, opset)
        v = f"m{t}"
        if t:  # a running count: each step's count is freed at once (a T-input Sum kept all T alive)
            total = "C" if t == T - 1 else f"C{t}"
            nodes.append(helper.make_node("Add", ["c0" if t == 1 else f"C{t - 1}", f"c{t}"], [total]))
    if T == 1:
        nodes.append(helper.make_node("Identity", ["c0"], ["C"]))
    outputs = [helper.make_tensor_value_info("C", TensorProto.FLOAT, None)]
    if keep:
        nodes.append(helper.make_node("Concat", [f"f{t}" for t in range(T)], ["F"], axis=0))
        outputs.append(helper.make_tensor_value_info("F", TensorProto.BOOL, None))
    names = inputs + ["threshold", "v0"] + (["bias"] if bias else [])
    graph = helper.make_graph(nodes, "if_kernel", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                                                   for n in names], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


class IFKernel:
    """Sessions of :func:`kernel_model` for one T, built when first needed."""

    def __init__(self, T: int, config: Config):
        self.T, self.config, self._sessions = T, config, {}

    def run(self, current: np.ndarray, theta, v0, bias=None, keep: bool = False):
        """Spike counts [B, ...] of IF neurons driven by ``current`` ([T, B, ...], or [1, B, ...]
        for a current that is the same at every step) plus ``bias`` at every step, and (``keep``)
        the spikes as booleans [T*B, ...]; else None."""
        constant = current.shape[0] == 1 and self.T > 1
        key = (constant, bias is not None, keep)
        if key not in self._sessions:
            self._sessions[key] = make_session(kernel_model(self.T, *key), self.config, spin=False)
        current = np.ascontiguousarray(current, np.float32)
        feeds = {f"x{t}": current[t] for t in range(current.shape[0])}
        feeds.update(threshold=np.asarray(theta, np.float32), v0=np.asarray(v0, np.float32))
        if bias is not None:
            feeds["bias"] = np.asarray(bias, np.float32)
        outs = self._sessions[key].run(["C", "F"] if keep else ["C"], feeds)
        return outs[0], (outs[1] if keep else None)
