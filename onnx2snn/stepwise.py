"""Step-by-step simulation: one onnxruntime call per time step, state carried explicitly.

This is the textbook way to run an SNN, and the reference the time-batched model is checked
against: the same graph built for T = 1 (:func:`rewrite.to_snn` with ``stepwise=True``), called T
times with the membrane potentials (and spiking max-pool accumulators) fed back. For an affine
readout (logits), the mean of the per-step outputs equals the time-batched output up to float
summation order. It costs T session calls, so it is slower; it exists for checking and for
streaming use (one step at a time).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .config import Config
from .plan import Plan
from .rewrite import to_snn
from .runtime import make_session
from .segments import cut
from .thresholds import LayerParams
from . import weights


class StepwiseSNN:
    """Run the SNN of (``ann``, ``plan``, ``params``) one step at a time; ``watch`` names tensors
    (e.g. a layer's spike output) whose value at every step :meth:`run` returns too.

    The model is cut where spike trains meet the readout: the *step* part runs T times with the
    state fed back; what reaches the readout is summed over the steps, and the *readout* part
    runs once on the mean -- the same semantics as the time-batched model."""

    def __init__(self, ann: onnx.ModelProto, plan: Plan, params: dict[str, LayerParams], config: Config,
                 watch: tuple[str, ...] = ()):
        model = to_snn(ann, plan, params, 1, stepwise=True)
        graph = weights.import_graph(model)
        rates = {n.outputs[0].name: _rate_source(n) for n in graph.nodes if n.name.endswith("/rate")}
        self.states = [t.name for t in graph.inputs if t.name.endswith(("/if/v", "/count", "/max"))]
        self.sources, self.rates = list(dict.fromkeys(rates.values())), rates
        step_outputs = self.sources + [_next(n) for n in self.states] + list(watch)
        self.step = make_session(cut(model, step_outputs, set(), untyped=np.float32), config)
        self.readout = make_session(cut(model, [o.name for o in ann.graph.output], set(rates), untyped=np.float32),
                                    config)
        self.readout_inputs = [i.name for i in self.readout.get_inputs()]
        self.watch = tuple(watch)
        self._v0 = {f"{layer.name}/if/v": np.asarray(params[layer.name].v0) for layer in plan.layers}

    def run(self, feeds: dict[str, np.ndarray], T: int):
        """(model outputs after T steps, {watched tensor: [value at step t]})."""
        state = {n: self._v0[n] if n in self._v0 else np.zeros((), np.float32) for n in self.states}
        names = self.sources + [_next(n) for n in self.states] + list(self.watch)
        sums, steps = {}, {w: [] for w in self.watch}
        for _ in range(T):
            values = dict(zip(names, self.step.run(names, {**feeds, **state})))
            for src in self.sources:
                sums[src] = values[src] if src not in sums else sums[src] + values[src]
            for w in self.watch:
                steps[w].append(values[w])
            state = {n: values[_next(n)] for n in self.states}
        means = {rate: sums[src] / T for rate, src in self.rates.items()}
        available = {**feeds, **means}
        outputs = self.readout.run(None, {k: available[k] for k in self.readout_inputs})
        return dict(zip([o.name for o in self.readout.get_outputs()], outputs)), steps


def _rate_source(mul: gs.Node) -> str:
    """The spike/current tensor a ``<tensor>/rate`` chain averages (Mul <- ReduceSum <- Reshape)."""
    reduce = mul.inputs[0].inputs[0]
    reshape = reduce.inputs[0].inputs[0]
    return reshape.inputs[0].name


def _next(state_name: str) -> str:
    """The output that holds a state input's value after the step."""
    if state_name.endswith("/if/v"):
        return state_name[: -len("/v")] + "/final_potential"
    return state_name + "_next"
