"""Target profiles: what the neurons and the graph of a deployment target may use.

A profile constrains the conversion, so that the accuracy onnx2snn reports is the accuracy of what
will run on the target; :func:`onnx2snn.snn.constraints.violations` checks a converted model
against it.

``onnx`` (default)
    Everything onnx2snn's own IFNeuron runs: v(0) per neuron, thresholds per channel, a bias
    current per channel, average and spiking max pooling, float weights.
``nir-portable``
    What sinabs 3.1, snnTorch 1.0 and Norse 1.1 import from NIR as shipped. None of their IF
    neurons has an initial potential, so v(0) = 0: phase 1 starts at 0 (alpha = 0), phase 2 searches
    thresholds only and puts the whole correction into the per-channel bias (no per-neuron
    potential). Thresholds stay per channel: the portable NIR writes them as 1 by scaling the
    weights (exact for reset by subtraction, :mod:`onnx2snn.export.portable`); average pooling and
    input scaling become convolutions there too. Max pooling has no NIR form: refused up front.
``nir-reset-zero``
    ``nir-portable`` with the neuron NIR's IF node describes and Norse 1.1 runs: reset to v_reset = 0
    (not by subtraction) and firing on ``v > theta`` (snnTorch 1.0 runs the same neuron from the
    portable file's LIF form). Calibrated with that neuron (IFNeuron ``reset="zero"``), so the
    accuracy reported is theirs; sinabs, which resets by subtraction, runs ``nir-portable``.
``int8``
    What integer neuromorphic hardware runs: each layer's weights int8 per output channel
    (symmetric), its threshold, v(0) and bias integers on the same scale, spikes 0/1 between layers
    (:mod:`onnx2snn.snn.int8`). Phase 2 quantises a layer when the thresholds before it are final
    and calibrates it on the quantised weights (:mod:`onnx2snn.calibration.quantize`). Only Conv/Gemm,
    average pooling and Flatten may sit between spiking layers (no residual sums, no max pooling);
    the readout layer's weights are int8 too, its bias float.
``speck``
    ``int8`` with the constraints of SynSense's DYNAP-CNN chips (Speck) as sinabs 3.1's dynapcnn
    backend writes a chip configuration (``sinabs/backend/dynapcnn``: ``discretize.py``,
    ``chips/dynapcnn.py``): weights and biases int8 on one scale per layer, one integer threshold
    per layer, 16-bit neuron state (threshold and v(0) at most 2^15 - 1 steps), reset by
    subtraction, sum pooling only. Thresholds are per layer (granularity tensor). Building the chip
    configuration itself needs SynSense's ``samna``, which the package registry only has as a stub
    that tries to download the real package when imported: not checked here.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Target:
    """One deployment profile (see module docstring)."""

    name: str
    initial_potential: bool  # v(0) other than 0 allowed
    portable_nir: bool  # --nir writes the form every consumer imports, and the model must have one
    max_pool: bool  # spiking max-pooling allowed
    channel_thresholds: bool  # thresholds must be constant within a channel (per layer or per channel)
    summary: str
    int8: bool = False  # int8 weights per output channel, integer thresholds, potentials and biases
    reset: str = "subtract"  # the IF neuron's reset: "subtract" or "zero" (ops/if_neuron.py)
    layer_scale: bool = False  # int8: one weight scale and one threshold per layer (not per channel)
    bias_levels: int | None = None  # int8: |bias| at most this many weight steps
    state_levels: int | None = None  # int8: |threshold|, |v(0)| at most this many weight steps


TARGETS = {t.name: t for t in (
    Target("onnx", True, False, True, False, "onnx2snn's IF neuron in onnxruntime: everything allowed"),
    Target("nir-portable", False, True, False, True,
           "NIR for sinabs, snnTorch and Norse as shipped: v(0) = 0, unit thresholds in the file"),
    Target("nir-reset-zero", False, True, False, True,
           "portable NIR whose IF neurons reset to 0 and fire on v > theta, as Norse and snnTorch (LIF form) "
           "run them", reset="zero"),
    Target("int8", True, False, False, True,
           "int8 weights per output channel, integer thresholds, v(0) and biases (the form chips take)", int8=True),
    Target("speck", True, False, False, True,
           "SynSense DYNAP-CNN / Speck as sinabs 3.1 maps a network to it: int8 weights and biases on one "
           "scale per layer, one 16-bit threshold per layer", int8=True, layer_scale=True, bias_levels=127,
           state_levels=2 ** 15 - 1),
)}
