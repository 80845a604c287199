"""The parameters of one spiking layer's IF neurons, as the rewrite takes them.

Threshold ``theta``, initial potential ``v(0)`` and, after phase 2, a constant bias current, each
shaped to broadcast against one time step [B, *shape] (a scalar, per channel or per neuron).
Phase 1 (:mod:`onnx2snn.calibration.thresholds`) and phase 2 make them; the rewrite writes them into
the IFNeuron nodes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..graph.plan import Plan


@dataclasses.dataclass(frozen=True)
class LayerParams:
    """IF parameters of one spiking layer, shaped to broadcast against one step [B, *shape]."""

    threshold: np.ndarray
    v0: np.ndarray
    source: str  # how the threshold was chosen, for reports
    dead: bool = False  # never fired on the calibration data
    bias: np.ndarray | None = None  # phase 2: constant current added at every step (per channel)
    reset: str = "subtract"  # the IF neuron's reset (ops/if_neuron.py): "subtract" or "zero"

    def summary(self) -> float:
        """One number for tables: the threshold, or the largest per-channel threshold."""
        return float(np.max(self.threshold))


def with_charge(theta: np.ndarray, alpha, T: int, initial_potential: bool, source: str,
                dead: bool = False, reset: str = "subtract") -> LayerParams:
    """IF parameters that give each neuron the charge ``alpha * theta`` at the start: as v(0) when the
    target has an initial potential, else as a bias current ``alpha * theta / T`` at every step (the
    same charge over the T steps; a target without v(0) still gets the rounding that v(0) = theta / 2
    gives the spike count, spread over the run)."""
    theta = np.asarray(theta, np.float32)
    charge = (alpha * theta).astype(np.float32)
    if initial_potential:
        return LayerParams(theta, charge, source, dead, reset=reset)
    return LayerParams(theta, np.zeros_like(charge), source, dead, bias=(charge / np.float32(T)).astype(np.float32),
                       reset=reset)


def unit_params(plan: Plan) -> dict[str, LayerParams]:
    """Threshold 1 and v(0) 1/2 for every layer: an SNN to look at (its graph, its memory), not to run."""
    return {layer.name: LayerParams(np.ones((), np.float32), np.full((), 0.5, np.float32), "unit")
            for layer in plan.layers}
