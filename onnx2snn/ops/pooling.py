"""Pooling family.

Average pooling is linear (a fixed weighted sum), so it acts on spike trains unchanged. Max pooling
is not: a max over binary spikes is an OR and over-counts; it needs a spiking max-pool.
"""

from __future__ import annotations

from .registry import OpSpec, Role, register

register(
    OpSpec("AveragePool", Role.LINEAR, nir="AvgPool2d"),
    OpSpec("GlobalAveragePool", Role.LINEAR, nir="AvgPool2d"),
    OpSpec("MaxPool", Role.MAXPOOL),
    OpSpec("GlobalMaxPool", Role.MAXPOOL),
)
