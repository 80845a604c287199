"""Stage 7: evaluate the SNN against the ANN on real inputs.

Accuracy is top-1 on the model's score output (the first floating-point output shaped [N, K]);
agreement is the fraction of samples where the SNN's top-1 class equals the ANN's, which needs no
labels. Firing rates are measured from the spikes: spikes / (neurons * T * samples).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import helper

from .config import Config
from .data import Dataset
from .errors import DataError
from .ops import if_neuron
from .runtime import add_spike_counters, make_session, run_batches


@dataclasses.dataclass(frozen=True)
class Evaluation:
    data: str
    samples: int
    score_output: str
    ann_accuracy: float | None
    snn_accuracy: float | None
    agreement: float
    firing_rates: dict[str, float]  # by spiking layer (activation node) name

    @property
    def accuracy_loss(self) -> float | None:
        if self.ann_accuracy is None:
            return None
        return self.ann_accuracy - self.snn_accuracy


def score_output(model: onnx.ModelProto, requested: str | None = None) -> str:
    """Name of the output that holds class scores: ``requested``, or the first float [N, K] one."""
    outputs = list(model.graph.output)
    if requested:
        if requested not in {o.name for o in outputs}:
            raise DataError(f"score output '{requested}' is not an output of the model; choose one "
                            f"of {[o.name for o in outputs]}")
        return requested
    for out in outputs:
        t = out.type.tensor_type
        is_float = t.elem_type and np.issubdtype(helper.tensor_dtype_to_np_dtype(t.elem_type), np.floating)
        if is_float and len(t.shape.dim) == 2:
            return out.name
    return outputs[0].name


def evaluate(ann: onnx.ModelProto, snn: onnx.ModelProto, data: Dataset, config: Config,
             score: str | None = None) -> Evaluation:
    """Run ANN and SNN on ``data`` and compare them."""
    name = score_output(ann, score)
    ann_scores = _scores(make_session(ann, config), data, config, name, "ANN")
    counted, counters = add_spike_counters(snn)
    session = make_session(counted, config)
    names = [name] + [n for pair in counters.values() for n in pair]
    chunks, totals = [], np.zeros((len(counters), 2))
    for _, values in run_batches(session, data, config.batch_size, names, "SNN"):
        chunks.append(values[name])
        totals += [[values[c], values[s]] for c, s in counters.values()]
    snn_scores = np.concatenate(chunks)
    rates = {layer[: -len("/if")]: float(t[0] / t[1]) if t[1] else 0.0
             for layer, t in zip(counters, totals)}
    return _compare(data, name, ann_scores, snn_scores, rates)


def _scores(session, data, config, name, desc):
    return np.concatenate([v[name] for _, v in run_batches(session, data, config.batch_size, [name], desc)])


def _compare(data, name, ann_scores, snn_scores, rates) -> Evaluation:
    ann_top, snn_top = _top1(ann_scores, name), _top1(snn_scores, name)
    ann_acc = snn_acc = None
    if data.labels is not None:
        classes = ann_scores.shape[1]
        if data.labels.max() >= classes:
            raise DataError(f"{data.source}: label {int(data.labels.max())} is out of range for "
                            f"output '{name}' with {classes} classes")
        ann_acc = float(np.mean(ann_top == data.labels))
        snn_acc = float(np.mean(snn_top == data.labels))
    agreement = float(np.mean(ann_top == snn_top))
    return Evaluation(data.source, len(data), name, ann_acc, snn_acc, agreement, rates)


def _top1(scores: np.ndarray, name: str) -> np.ndarray:
    if scores.ndim != 2:
        raise DataError(f"output '{name}' has shape {list(scores.shape)}, not [N, classes]; "
                        "name the score output with --score-output")
    return scores.argmax(axis=1)


def layer_names(snn: onnx.ModelProto) -> list[str]:
    """Spiking layer names of a converted model, in graph order."""
    return [n.name[: -len("/if")] for n in snn.graph.node
            if n.domain == if_neuron.DOMAIN and n.op_type == if_neuron.OP_TYPE]
