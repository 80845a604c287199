"""Stage 7: evaluate the SNN against the ANN on real inputs.

Accuracy is top-1 on the model's score output (the first floating-point output shaped [N, K] --
trailing axes of size 1, as in [N, K, 1, 1], are dropped --, or ``--score-output``; an integer label
output is used as the prediction itself); agreement is the fraction of samples where the SNN's top-1
class equals the ANN's, which needs no labels. A model with one float output per sample is treated as
a regression: R^2 against float targets ``y``. Any other float output (a feature map, say) is
compared as a whole: no classes, only how closely the SNN's output follows the ANN's. For float
outputs the RMS difference, the relative L2 error and the cosine of SNN and ANN outputs are
reported. Labels are checked against the score output before any work (:func:`check_data`). Firing rates
are measured from the spikes: spikes / (neurons * T * samples).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import helper

from ..config import Config
from ..data import Dataset, as_dataset
from ..errors import DataError
from ..snn.rewrite import Record
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
    task: str = "classification"  # or "regression" (one float per sample), "output" (any other float output)
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
        dims = [d.dim_value for d in t.shape.dim]
        if is_float and len(dims) >= 2 and all(d == 1 for d in dims[2:]):
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
    record = Record.read(snn)
    layer = {node: name for name, node in record.neurons.items()} if record else {}
    rates = {layer.get(node, node): rate for node, rate in result.firing_rates().items()}
    return compare(data, name, ann_scores, result.outputs[name], rates)


def check_data(ann: onnx.ModelProto, data: Dataset, score: str | None = None) -> None:
    """Refuse, before any work, test data whose labels cannot be compared with the score output:
    class indices 0..K-1 for a classifier (K when the output's shape says it), numbers for a
    regression."""
    name = score_output(ann, score)
    if data.labels is None:
        return
    out = next(o for o in ann.graph.output if o.name == name)
    t = out.type.tensor_type
    dims = [d.dim_value for d in t.shape.dim]
    is_float = t.elem_type and np.issubdtype(helper.tensor_dtype_to_np_dtype(t.elem_type), np.floating)
    kind = _kind_of_shape(dims) if is_float else "classification"
    if kind == "classification":
        _check_labels(data, name, dims[1] if len(dims) > 1 and dims[1] > 0 else None)


def _kind_of_shape(dims: list[int]) -> str:
    """'regression' ([N] or [N, 1]), 'classification' ([N, K] with trailing axes of size 1), or
    'output' (anything else); unknown sizes (0) count as K > 1."""
    if len(dims) <= 1 or (len(dims) >= 2 and all(d == 1 for d in dims[1:])):
        return "regression"
    return "classification" if all(d == 1 for d in dims[2:]) else "output"


def _check_labels(data: Dataset, name: str, classes: int | None) -> None:
    labels = data.labels
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{data.source}: labels 'y' must be integer class indices for output '{name}'")
    if labels.ndim != 1 or (labels < 0).any():
        raise DataError(f"{data.source}: labels 'y' for output '{name}' must be class indices 0..K-1, one per sample")
    if classes is not None and labels.max() >= classes:
        raise DataError(f"{data.source}: label {int(labels.max())} is out of range for output '{name}' with "
                        f"{classes} classes")


def compare(data: Dataset, name: str, ann_scores: np.ndarray, snn_scores: np.ndarray,
            rates: dict[str, float] | None = None) -> Evaluation:
    """ANN vs SNN scores (output ``name``) on ``data``: agreement, accuracies (with labels), RMSE
    and the other fidelity figures; the task follows the output's shape (module docstring)."""
    rates = rates or {}
    fidelity = _fidelity(ann_scores, snn_scores)
    rmse = fidelity.pop("rmse")
    is_float = np.issubdtype(ann_scores.dtype, np.floating)
    kind = _kind_of_shape([len(ann_scores), *ann_scores.shape[1:]]) if is_float else "classification"
    if kind == "output":
        return Evaluation(data.source, len(data), name, None, None, None, rates, rmse, "output", **fidelity)
    if kind == "regression":
        ann_r2 = snn_r2 = None
        if data.labels is not None:
            y = data.labels.astype(np.float64).reshape(len(data), -1)
            ann_r2, snn_r2 = (_r2(y, s.reshape(len(data), -1)) for s in (ann_scores, snn_scores))
        return Evaluation(data.source, len(data), name, None, None, None, rates, rmse, "regression",
                          ann_r2, snn_r2, **fidelity)
    ann_top, snn_top = _top1(ann_scores), _top1(snn_scores)
    ann_acc = snn_acc = None
    if data.labels is not None:
        _check_labels(data, name, ann_scores.shape[1] if ann_scores.ndim >= 2 else None)
        ann_acc, snn_acc = float(np.mean(ann_top == data.labels)), float(np.mean(snn_top == data.labels))
    agreement = float(np.mean(ann_top == snn_top))
    return Evaluation(data.source, len(data), name, ann_acc, snn_acc, agreement, rates, rmse, **fidelity)


def _fidelity(ann_scores: np.ndarray, snn_scores: np.ndarray) -> dict:
    """How closely the SNN's float output follows the ANN's: RMS difference, relative L2 error
    ``||z_snn - z_ann|| / ||z_ann||`` over all samples, the mean over samples of the cosine of the
    two output vectors (0 where exactly one of them is zero), and the ANN's spread: the RMS over
    outputs of their standard deviation across samples, relative to the RMS of the outputs (near 0:
    the ANN answers the same whatever the input, e.g. with random weights, and the other figures say
    little). None for outputs that are not float."""
    if not np.issubdtype(ann_scores.dtype, np.floating):
        return dict(rmse=None)
    a = ann_scores.astype(np.float64).reshape(len(ann_scores), -1)
    b = snn_scores.astype(np.float64).reshape(len(snn_scores), -1)
    norm = float(np.linalg.norm(a))
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = na * nb > 0  # a zero output against a nonzero one has cosine 0; two zero outputs agree
    cos = np.where(both, np.sum(a * b, axis=1) / np.where(both, na * nb, 1), ((na == 0) & (nb == 0)) * 1.0)
    scale = float(np.sqrt(np.mean(a ** 2)))
    return dict(rmse=float(np.sqrt(np.mean((b - a) ** 2))),
                output_rel_error=float(np.linalg.norm(b - a) / norm) if norm else None,
                output_cosine=float(np.mean(cos)),
                ann_output_spread=float(np.sqrt(np.mean(a.std(axis=0) ** 2)) / scale) if scale else 0.0)


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(((y - y.mean(axis=0)) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total else float("nan")


def _top1(scores: np.ndarray) -> np.ndarray:
    """Class per sample: a label output as it is, else the argmax over the classes of scores
    [N, K] (trailing axes of size 1 dropped)."""
    if scores.ndim == 1 and np.issubdtype(scores.dtype, np.integer):
        return scores  # a label output
    return scores.reshape(len(scores), -1).argmax(axis=1)
