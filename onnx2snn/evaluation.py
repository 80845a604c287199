"""Stage 7: evaluate the SNN against the ANN on real inputs.

Accuracy is top-1 on the model's score output (the first floating-point output shaped [N, K], or
``--score-output``; an integer label output is used as the prediction itself); agreement is the
fraction of samples where the SNN's top-1 class equals the ANN's, which needs no labels. A model
with one float output per sample is treated as a regression: R^2 against float targets ``y``.
For float outputs, the RMS difference between SNN and ANN outputs is reported too. Firing rates
are measured from the spikes: spikes / (neurons * T * samples).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import helper

from .config import Config
from .data import Dataset, as_dataset
from .errors import DataError
from .ops import if_neuron
from .budget import Budget
from .runtime import run
from .stepwise import run_snn


@dataclasses.dataclass(frozen=True)
class Evaluation:
    data: str
    samples: int
    score_output: str
    ann_accuracy: float | None  # top-1 vs labels (classification with labels)
    snn_accuracy: float | None
    agreement: float | None  # fraction of samples with SNN top-1 == ANN top-1 (classification)
    firing_rates: dict[str, float]  # by spiking layer (activation node) name
    output_rmse: float | None = None  # RMS difference of SNN and ANN scores (float outputs)
    task: str = "classification"  # or "regression" (one float per sample)
    ann_r2: float | None = None  # regression with targets y: coefficient of determination
    snn_r2: float | None = None
    output_rel_error: float | None = None  # ||SNN - ANN|| / ||ANN|| over all float outputs
    output_cosine: float | None = None  # mean over samples of cos(SNN output, ANN output)
    ann_output_spread: float | None = None  # how much the ANN's output varies across samples (see compare)

    @property
    def accuracy_loss(self) -> float | None:
        if self.ann_accuracy is None:
            return None
        return self.ann_accuracy - self.snn_accuracy


def score_output(model: onnx.ModelProto, requested: str | None = None) -> str:
    """The output compared between ANN and SNN: ``requested``, else the first float output shaped
    [N, K], else the first tensor output (e.g. an integer label output)."""
    outputs = list(model.graph.output)
    tensors = [o for o in outputs if o.type.HasField("tensor_type")]
    if requested:
        if requested not in {o.name for o in outputs}:
            raise DataError(f"score output '{requested}' is not an output of the model; choose one "
                            f"of {[o.name for o in outputs]}")
        if requested not in {o.name for o in tensors}:
            raise DataError(f"output '{requested}' is not a tensor (e.g. a ZipMap sequence of maps); "
                            f"choose one of {[o.name for o in tensors]}")
        return requested
    for out in tensors:
        t = out.type.tensor_type
        is_float = t.elem_type and np.issubdtype(helper.tensor_dtype_to_np_dtype(t.elem_type), np.floating)
        if is_float and len(t.shape.dim) == 2:
            return out.name
    if not tensors:
        raise DataError("the model has no tensor output to compare; re-export it with a score output")
    return tensors[0].name


def evaluate(ann: onnx.ModelProto, snn: onnx.ModelProto, data, config: Config,
             score: str | None = None, budget: Budget | None = None, source: tuple | None = None) -> Evaluation:
    """Run ANN and SNN on ``data`` (a Dataset, arrays or a data path) and compare them, in runs
    sized by ``budget`` (default: ``config``'s). ``source`` = (ann, plan, params) of the SNN lets a
    run that cannot hold one sample's T steps go in chunks of steps (see :mod:`.stepwise`)."""
    budget = budget or Budget(config.memory_limit)
    data = as_dataset(data, ann, "test data")
    name = score_output(ann, score)
    ann_scores = run(ann, data, config, [name], "ANN", budget)[name]
    result = run_snn(snn, data, config, [name], budget, "SNN", count=True, source=source)
    rates = {node[: -len("/if")]: rate for node, rate in result.firing_rates().items()}
    return compare(data, name, ann_scores, result.outputs[name], rates)


def compare(data: Dataset, name: str, ann_scores: np.ndarray, snn_scores: np.ndarray,
            rates: dict[str, float] | None = None) -> Evaluation:
    """ANN vs SNN scores (output ``name``) on ``data``: agreement, accuracies (with labels), RMSE."""
    rates = rates or {}
    fidelity = _fidelity(ann_scores, snn_scores)
    rmse = fidelity.pop("rmse")
    if _is_regression(ann_scores):
        ann_r2 = snn_r2 = None
        if data.labels is not None:
            y = data.labels.astype(np.float64).reshape(len(data), -1)
            ann_r2, snn_r2 = (_r2(y, s.reshape(len(data), -1)) for s in (ann_scores, snn_scores))
        return Evaluation(data.source, len(data), name, None, None, None, rates, rmse, "regression",
                          ann_r2, snn_r2, **fidelity)
    ann_top, snn_top = _top1(ann_scores, name), _top1(snn_scores, name)
    ann_acc = snn_acc = None
    if data.labels is not None:
        labels = data.labels
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{data.source}: labels 'y' must be integer class indices for output '{name}'")
        if labels.ndim != 1 or (labels < 0).any():
            raise DataError(f"{data.source}: labels 'y' for output '{name}' must be class indices 0..K-1, "
                            "one per sample")
        classes = ann_scores.shape[1] if ann_scores.ndim == 2 else None
        if classes is not None and labels.max() >= classes:
            raise DataError(f"{data.source}: label {int(labels.max())} is out of range for "
                            f"output '{name}' with {classes} classes")
        ann_acc, snn_acc = float(np.mean(ann_top == labels)), float(np.mean(snn_top == labels))
    agreement = float(np.mean(ann_top == snn_top))
    return Evaluation(data.source, len(data), name, ann_acc, snn_acc, agreement, rates, rmse, **fidelity)


def _fidelity(ann_scores: np.ndarray, snn_scores: np.ndarray) -> dict:
    """How closely the SNN's float output follows the ANN's: RMS difference, relative L2 error
    ``||z_snn - z_ann|| / ||z_ann||`` over all samples, the mean over samples of the cosine of the
    two output vectors, and the ANN's spread: the RMS over outputs of their standard deviation
    across samples, relative to the RMS of the outputs (near 0: the ANN answers the same whatever
    the input, e.g. with random weights, and the other figures say little). None for outputs that
    are not float."""
    if not np.issubdtype(ann_scores.dtype, np.floating):
        return dict(rmse=None)
    a = ann_scores.astype(np.float64).reshape(len(ann_scores), -1)
    b = snn_scores.astype(np.float64).reshape(len(snn_scores), -1)
    norm = float(np.linalg.norm(a))
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1), 1.0)
    scale = float(np.sqrt(np.mean(a ** 2)))
    return dict(rmse=float(np.sqrt(np.mean((b - a) ** 2))),
                output_rel_error=float(np.linalg.norm(b - a) / norm) if norm else None,
                output_cosine=float(np.mean(cos)),
                ann_output_spread=float(np.sqrt(np.mean(a.std(axis=0) ** 2)) / scale) if scale else 0.0)


def _is_regression(scores: np.ndarray) -> bool:
    """One float per sample: [N] or [N, 1] floating-point output."""
    return np.issubdtype(scores.dtype, np.floating) and (scores.ndim == 1 or scores.shape[1:] == (1,))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(((y - y.mean(axis=0)) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total else float("nan")


def _top1(scores: np.ndarray, name: str) -> np.ndarray:
    if scores.ndim == 1 and np.issubdtype(scores.dtype, np.integer):
        return scores  # a label output
    if scores.ndim != 2:
        raise DataError(f"output '{name}' has shape {list(scores.shape)}, not [N, classes]; "
                        "name the score output with --score-output")
    return scores.argmax(axis=1)


def layer_names(snn: onnx.ModelProto) -> list[str]:
    """Spiking layer names of a converted model, in graph order."""
    return [n.name[: -len("/if")] for n in snn.graph.node
            if n.domain == if_neuron.DOMAIN and n.op_type == if_neuron.OP_TYPE]
