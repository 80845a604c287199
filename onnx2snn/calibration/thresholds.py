"""Stage 4, phase 1 (potential optimisation): thresholds and initial membrane potentials.

For layer l with ANN activation a_l on the calibration data:

    theta_l = P_q(a_l > 0)            q-th percentile of the positive activations (q = 100: max-norm)
    theta_l = m                        when the ANN clips with a trained value, Clip(0, m) / ReLU6
                                       or a clip-floor activation's theta (QCFS, ops/clip_floor.py)
    v_l(0)  = alpha * theta_l          alpha = 0.5 by default; a clip-floor's trained shift s

With v(0) = theta/2 and a constant current z the IF rate is the rounded quantisation
``theta/T * clip(floor(T z / theta + 1/2), 0, T)`` of the ReLU (method.md): the percentile trades
clipping error (a > theta is lost) against quantisation error (grid theta / T).
Per-channel thresholds (axis 1) are shaped to broadcast against one time step [B, C, ...].
A layer (or channel) that never fired on the calibration data gets the layer's threshold
(or 1.0 when the whole layer is silent) and is reported as dead; thresholds are never 0/NaN/Inf.
"""

from __future__ import annotations

import numpy as np

from ..config import Config, Granularity
from ..graph.plan import Plan
from ..snn.params import LayerParams, with_charge
from .stats import LayerStats


def phase1(plan: Plan, stats: dict[str, LayerStats], config: Config) -> dict[str, LayerParams]:
    """Thresholds and v(0) of every layer of ``plan`` from its activation statistics."""
    return {layer.name: _layer_params(layer.clip_max, stats[layer.name], config, layer.alpha)
            for layer in plan.layers}


def _layer_params(clip_max, s: LayerStats, config: Config, alpha: float | None = None) -> LayerParams:
    dtype = np.float32
    dead = s.positive == 0
    if clip_max is not None:
        theta = np.asarray(clip_max, dtype=np.float64)
        source = f"trained clip {clip_max:g}"
    elif config.granularity is Granularity.CHANNEL:
        layer_theta = float(s.percentile(config.percentile)[0]) or 1.0
        theta = s.percentile(config.percentile, per_channel=True)
        theta = np.where(theta > 0, theta, layer_theta)
        theta = theta.reshape((-1,) + (1,) * max(len(s.shape) - 1, 0))
        source = f"percentile {config.percentile:g} per channel"
    else:
        theta = np.asarray(float(s.percentile(config.percentile)[0]) or 1.0)
        source = "max" if config.percentile >= 100 else f"percentile {config.percentile:g}"
    theta = theta.astype(dtype)
    if not np.all(np.isfinite(theta)) or np.any(theta <= 0):
        raise AssertionError(f"internal error: threshold of layer '{s.name}' is {theta}")
    alpha = config.alpha if alpha is None else alpha
    return with_charge(theta, alpha, config.T, config.profile.initial_potential, source, dead, config.profile.reset)
