"""Rate boundaries: ops that run on firing rates between spiking layers.

An op that is not linear on spike trains and not an activation -- local response normalisation
(LRN, used by AlexNet, ZFNet and GoogLeNet) is the one users meet -- can still sit between spiking
layers as a *rate boundary*: the spike trains entering it are averaged over the T steps, the op is
applied to the rates, ``y = op(mean_t s_t)``, and its output drives the next layers as a constant
current, the way the analog input drives the first layer (direct encoding). For a network whose
layers before the boundary reproduce their ANN activations as rates, the boundary reproduces the
ANN's op exactly; the cost is time and events: the layers after it start only once the layers before
it have run all T steps (latency 2T for one boundary), and the boundary itself is not event-driven
(it computes on averaged values, like the readout). Every boundary is listed in the report and in
the converted model's metadata. LRN is a boundary by default; ``--rate-boundary OP[,OP]``
(``Config.rate_boundary``) makes other ops one too.
"""

from __future__ import annotations

from .registry import OpSpec, Role, register

register(OpSpec("LRN", Role.BOUNDARY))
