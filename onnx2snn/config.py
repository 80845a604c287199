"""The one configuration object, frozen and validated once at construction."""

from __future__ import annotations

import dataclasses
import enum
import math
import re

import onnxruntime as ort

from .errors import ConfigError
from .targets import TARGETS, Target

MAX_T = 4096
MIN_MEMORY = 64 << 20  # a budget below this cannot hold Python, onnxruntime and one run
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10 ** 3, "kib": 1 << 10, "m": 1 << 20, "mb": 10 ** 6,
          "mib": 1 << 20, "g": 1 << 30, "gb": 10 ** 9, "gib": 1 << 30, "t": 1 << 40, "tb": 10 ** 12, "tib": 1 << 40}


class Method(enum.Enum):
    """How thresholds and initial potentials are chosen.

    DUAL_PHASE is onnx2snn's method (phase 1 + phase 2); the others are the published baselines,
    kept selectable so comparisons are reproducible in one tool:
    MAX_NORM (Diehl et al. 2015): theta = max activation, v(0) = 0;
    PERCENTILE (Rueckauer et al. 2017): theta = 99.9th percentile, v(0) = 0;
    PERCENTILE_HALF (Deng & Gu 2021, Bu et al. 2022): 99.9th percentile and v(0) = theta / 2.
    """

    DUAL_PHASE = "dual-phase"
    MAX_NORM = "max"
    PERCENTILE = "percentile"
    PERCENTILE_HALF = "percentile-half"


class Granularity(enum.Enum):
    """Whether a spiking layer has one threshold or one per channel (axis 1)."""

    TENSOR = "tensor"
    CHANNEL = "channel"


# method: (percentile, alpha, granularity) used when the option is not given; the dual-phase values
# are measured (docs/accuracy.md, tools/sweep_percentile.py, tools/ablation.py)
METHOD_DEFAULTS = {
    Method.DUAL_PHASE: (98.0, 0.5, Granularity.CHANNEL),
    Method.MAX_NORM: (100.0, 0.0, Granularity.TENSOR),
    Method.PERCENTILE: (99.9, 0.0, Granularity.TENSOR),
    Method.PERCENTILE_HALF: (99.9, 0.5, Granularity.TENSOR),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Options of one conversion. Invalid values raise :class:`ConfigError` here, nowhere else.

    Attributes:
        T: time steps of the SNN (1 .. 4096).
        method: dual-phase (ours) or a baseline (see :class:`Method`).
        phase: 2 runs phase 2 after phase 1 (dual-phase only); 1 stops after phase 1.
        percentile: phase 1 threshold = this percentile of a layer's positive activations on the
            calibration data, in (0, 100]; 100 is the exact maximum (max-norm).
            None: the method's default (:data:`METHOD_DEFAULTS`).
        granularity: one threshold per layer or per channel; None: the method's.
        alpha: initial membrane potential v(0) = alpha * threshold, in [0, 1]; None: the method's.
        batch_size: samples per onnxruntime call (the SNN runs T * batch_size rows at once).
        calib_samples: use at most this many calibration samples (None: all of them).
        phase2_samples: phase 2 runs on the first this-many calibration samples (statistics use
            all of them); it keeps their spike trains, one bit per neuron and step, so this bounds
            its memory. 512: on fashion_cnn (1,000 calibration samples) 512 and 1,024 gave the same
            accuracy at T = 2, 4, 8 within 0.5 points, at half the cost (tools/phase2_samples.py,
            table in docs/phase2_cost.md).
        fit_weights: phase 2 also fits each layer's Conv/Gemm weights and bias through its spiking
            neurons, after the layer's search and correction, then calibrates the layer again and
            keeps whichever is better (:mod:`onnx2snn.calibration.fit`; changes the user's weights,
            reported per layer; off by default).
        refit_weights: phase 2 also refits each layer's Conv/Gemm weights by least squares
            (changes the user's weights; off by default).
        histogram_bins: bins of the streaming percentile histogram (resolution 2*max/bins).
        threads: onnxruntime intra-op threads (None: onnxruntime's default); phase 2's search also
            runs this many candidates side by side (None: one per CPU).
        providers: onnxruntime execution providers in order of preference (None: all that this
            onnxruntime build offers, in its order).
        rate_boundary: op types (default ONNX domain) that may sit between spiking layers as rate
            boundaries, computed on firing rates (:mod:`.ops.boundary`); LRN always is one.
        search_scales: phase 2's threshold candidates, as factors of the phase-1 threshold (must
            contain 1.0, phase 1 itself); search_alphas: its v(0) candidates, as fractions of the
            chosen threshold, each in [0, 1]. A one-element grid each (``(1.0,)``, ``(0.5,)``)
            keeps phase 1's parameters and leaves only the bias and potential corrections
            (tools/bench_phase2.py --no-search measures that floor).
        search_samples: phase 2's search set has at least this many samples (all of them when
            there are fewer; a tenth of them beyond ten times this), search_neurons at most this
            many neurons per layer (every channel, a fixed random set of positions). Measured on
            the shipped models: smaller sets cost accuracy (docs/phase2_cost.md,
            tools/phase2_samples.py).
        memory_limit: memory budget of the conversion in bytes (or a size such as "2GiB"); every
            onnxruntime run is sized to fit it (:mod:`onnx2snn.simulation.budget`). None: the smaller of 4 GiB and half
            of the memory available when the conversion starts. Results do not depend on it.
        target: the deployment profile (:mod:`onnx2snn.targets`): ``onnx`` (default, everything
            onnx2snn's neuron runs), ``nir-portable`` (v(0) = 0: the charge alpha * theta, and
            phase 2's alpha candidates, become a bias current alpha * theta / T; phase 2 corrects with
            the bias only) or ``int8`` (int8 weights, integer thresholds, potentials and biases;
            needs phase 2, excludes fit_weights and refit_weights).
    """

    T: int = 16
    method: Method = Method.DUAL_PHASE
    phase: int = 2
    percentile: float | None = None
    granularity: Granularity | None = None
    alpha: float | None = None
    batch_size: int = 64
    calib_samples: int | None = None
    refit_weights: bool = False
    fit_weights: bool = False
    phase2_samples: int = 512
    histogram_bins: int = 2048
    threads: int | None = None
    providers: tuple[str, ...] | None = None
    memory_limit: int | None = None
    rate_boundary: tuple[str, ...] = ()
    search_scales: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25)
    search_alphas: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    search_samples: int = 256
    search_neurons: int = 2048
    target: str = "onnx"

    def __post_init__(self):
        if isinstance(self.granularity, str):
            object.__setattr__(self, "granularity", _parse_enum(Granularity, self.granularity))
        if isinstance(self.method, str):
            object.__setattr__(self, "method", _parse_enum(Method, self.method))
        default_percentile, default_alpha, default_granularity = METHOD_DEFAULTS[self.method]
        if self.target not in TARGETS:
            raise ConfigError(f"target '{self.target}' is not one of: {', '.join(TARGETS)}")
        if self.profile.layer_scale:  # one threshold per layer
            if self.granularity is Granularity.CHANNEL:
                raise ConfigError(f"target '{self.target}' has one threshold per layer: leave out --granularity "
                                  "channel")
            default_granularity = Granularity.TENSOR
        if self.granularity is None:
            object.__setattr__(self, "granularity", default_granularity)
        if self.percentile is None:
            object.__setattr__(self, "percentile", default_percentile)
        if self.alpha is None:
            object.__setattr__(self, "alpha", default_alpha)
        _check_int("T", self.T, 1, MAX_T, "the number of SNN time steps, e.g. -T 16")
        if self.phase not in (1, 2) or isinstance(self.phase, bool):
            raise ConfigError(f"phase={self.phase!r} must be 1 (thresholds only) or 2 (with error optimisation)")
        _check_float("percentile", self.percentile, 0.0, 100.0, low_open=True,
                     hint="use a value in (0, 100], e.g. 99.99; 100 means the maximum")
        _check_float("alpha", self.alpha, 0.0, 1.0, hint="use 0.5 (half a threshold)")
        _check_int("batch_size", self.batch_size, 1, 1 << 20, "e.g. --batch-size 64")
        if self.calib_samples is not None:
            _check_int("calib_samples", self.calib_samples, 1, 1 << 31, "e.g. --calib-samples 1000")
        _check_int("phase2_samples", self.phase2_samples, 1, 1 << 31, "e.g. 512")
        _check_int("histogram_bins", self.histogram_bins, 16, 1 << 20, "e.g. 2048")
        if self.threads is not None:
            _check_int("threads", self.threads, 1, 1024, "e.g. --threads 2")
        object.__setattr__(self, "rate_boundary", _op_types(self.rate_boundary))
        object.__setattr__(self, "search_scales", _grid("search_scales", self.search_scales, 0.0, 16.0))
        if 1.0 not in self.search_scales:
            raise ConfigError(f"search_scales={self.search_scales} must contain 1.0 (phase 1's threshold)")
        object.__setattr__(self, "search_alphas", _grid("search_alphas", self.search_alphas, 0.0, 1.0))
        if self.profile.int8 and (self.fit_weights or self.refit_weights):
            raise ConfigError("target 'int8' quantises the weights itself; leave out --fit-weights/--refit-weights")
        if self.profile.int8 and not self.runs_phase2:
            raise ConfigError("target 'int8' calibrates the integer thresholds in phase 2: use the dual-phase "
                              "method with phase 2")
        if self.fit_weights and self.profile.reset != "subtract":
            raise ConfigError(f"--fit-weights fits neurons that reset by subtraction; target '{self.target}' resets "
                              "to zero")
        if self.fit_weights and self.refit_weights:
            raise ConfigError("fit_weights and refit_weights both change the weights; choose one "
                              "(--fit-weights fits them through the spiking neurons)")
        _check_int("search_samples", self.search_samples, 1, 1 << 31, "e.g. 256")
        _check_int("search_neurons", self.search_neurons, 1, 1 << 31, "e.g. 2048")
        if self.memory_limit is not None:
            object.__setattr__(self, "memory_limit", parse_size(self.memory_limit))
            _check_int("memory_limit", self.memory_limit, MIN_MEMORY, 1 << 50, "e.g. --memory-limit 2GiB")
        if self.providers is not None:
            object.__setattr__(self, "providers", tuple(self.providers))
            available = ort.get_available_providers()
            unknown = [p for p in self.providers if p not in available]
            if unknown or not self.providers:
                raise ConfigError(f"execution provider(s) {unknown} not available in this onnxruntime; "
                                  f"choose from {available}")

    @property
    def profile(self) -> Target:
        """The deployment profile named by ``target``."""
        return TARGETS[self.target]

    @property
    def runs_phase2(self) -> bool:
        return self.method is Method.DUAL_PHASE and self.phase == 2

    def replace(self, **changes) -> Config:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _parse_enum(cls, value):
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(m.value for m in cls)
        raise ConfigError(f"{cls.__name__.lower()} '{value}' is not one of: {choices}") from None


def _check_int(name, value, low, high, hint):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}; {hint}")
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range [{low}, {high}]; {hint}")


def _check_float(name, value, low, high, hint, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}; {hint}")
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name}={value} is out of range {bracket}{low}, {high}]; {hint}")


def _grid(name, values, low, high) -> tuple[float, ...]:
    """A non-empty tuple of distinct finite numbers in [low, high], as floats, in the given order."""
    values = tuple(values) if not isinstance(values, (int, float)) else (values,)
    if not values or len(set(values)) < len(values):
        raise ConfigError(f"{name}={values} must be a non-empty list of distinct numbers")
    for v in values:
        _check_float(name, v, low, high, hint=f"each candidate of {name} lies in [{low}, {high}]")
    return tuple(float(v) for v in values)


def _op_types(value) -> tuple[str, ...]:
    """Op type names from a tuple or a comma-separated string (``"LRN,Sigmoid"``)."""
    names = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(n).strip() for n in names if str(n).strip())
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise ConfigError(f"rate_boundary: {bad} are not ONNX op type names; write e.g. --rate-boundary LRN,Sigmoid")
    return names


def parse_size(text) -> int:
    """Bytes from ``'2GiB'``, ``'512M'``, ``'1.5 GB'`` or a plain number of bytes (K/M/G/T alone
    are binary units)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise ConfigError(f"memory size '{text}' is not understood; write it like 2GiB, 512MiB or 4G")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
