"""How much of the conversion loss is the quantization to T levels, and how much the spiking dynamics?

    python tools/rate_model.py [--models fashion_cnn mnist_cnn] [--T 2 4 8] [--phase 1 2] [--oracle] [--json]

An IF neuron with threshold theta and initial potential v0, driven for T steps by a *constant*
current z, fires ``clip(floor((T z + v0) / theta), 0, T)`` times (reset by subtraction, at most one
spike per step), so its rate is the T-level quantizer

    Q(z) = theta / T * clip(floor((T z + v0) / theta), 0, T)

This tool converts each model with onnx2snn at each T (``--phase``: 1 = phase-1 parameters, 2 =
the default dual-phase conversion) and replaces every IFNeuron of the converted model by Q with the
same theta, v0 and bias current: the *rate model*, an ANN whose activations are quantized exactly as
the SNN's would be if every layer's input current were constant over the T steps. In the SNN it is
not (deeper layers receive spikes that come and go); the difference between the two accuracies is
what the spiking dynamics cost (residual potential, early and late spikes), the difference between
the ANN and the rate model what T levels per threshold cost with these thresholds. Phase 2 fits
the parameters to the SNN, not to Q, so the rate model is not a bound on what a converter can reach
-- it says which of the two errors dominates. Models without max-pooling only (the spiking max-pool
has no per-step closed form). Prints a table; ``--json``: one object on the last line.

``--oracle`` adds, per row, a coordinate search on the rate model itself, scored on the *test*
split: layer by layer in order, every layer's thresholds (per channel, as converted) are scaled by
one factor and its v0 shifted by a multiple of theta, ``theta' = s theta``, ``v0' = s v0 + d s
theta`` for s in ``ORACLE_SCALES`` and d in ``ORACLE_SHIFTS``, keeping whichever raises the test
accuracy (one sweep). Picked on the labels it is scored on, it is an optimistic figure for T-level
quantization with re-tuned thresholds: not reachable by a converter, which sees no test labels.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
from onnx import helper, numpy_helper


import common  # noqa: F401 - the package importable from a checkout
import onnx2snn
from common import model_path
from onnx2snn import Config
from onnx2snn.data import as_dataset
from onnx2snn.simulation.evaluation import evaluate, score_output
from onnx2snn.ops import if_neuron
from onnx2snn.simulation.runtime import run


def rate_model(snn: onnx.ModelProto, T: int) -> onnx.ModelProto:
    """``snn`` with every IFNeuron(X, theta, v0) replaced by Q(X) (module docstring), in standard ops."""
    out = onnx.ModelProto()
    out.CopyFrom(snn)
    out.graph.initializer.extend([numpy_helper.from_array(np.float32(T), "rate/T"),
                                  numpy_helper.from_array(np.float32(0), "rate/zero")])
    nodes = []
    for node in out.graph.node:
        is_if = node.domain == if_neuron.DOMAIN and node.op_type == if_neuron.OP_TYPE
        nodes += _quantizer(node) if is_if else [node]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.functions[:]
    kept = [o for o in out.opset_import if o.domain != if_neuron.DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(kept)
    return out


def _quantizer(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Q(X) of one IFNeuron(X, theta, v0), written to its spike output."""
    x, theta, v0 = node.input
    p = f"{node.name}/rate"
    nodes, last = [], None
    for op, ins, name in (("Mul", [x, "rate/T"], "tz"), ("Add", ["", v0], "charge"), ("Div", ["", theta], "levels"),
                          ("Floor", [""], "floor"), ("Clip", ["", "rate/zero", "rate/T"], "count"),
                          ("Mul", ["", theta], "value"), ("Div", ["", "rate/T"], "rate")):
        out = node.output[0] if name == "rate" else f"{p}/{name}"
        nodes.append(helper.make_node(op, [i or last for i in ins], [out], name=f"{p}/{name}"))
        last = out
    return nodes


ORACLE_SCALES = (0.8, 0.9, 1.0, 1.1, 1.25)
ORACLE_SHIFTS = (-0.1, 0.0, 0.1)


def oracle(model: onnx.ModelProto, snn: onnx.ModelProto, data, config: Config) -> float:
    """Test accuracy of the rate ``model`` of ``snn`` after the coordinate search of ``--oracle``
    (module docstring) on ``data``. It overwrites ``model``'s theta / v0 initializers (with the last
    trial's)."""
    init = {i.name: i for i in model.graph.initializer}
    layers = [(init[n.input[1]], init[n.input[2]]) for n in snn.graph.node  # each IFNeuron's (theta, v0)
              if n.domain == if_neuron.DOMAIN and n.op_type == if_neuron.OP_TYPE]
    base = [(numpy_helper.to_array(t).copy(), numpy_helper.to_array(v).copy()) for t, v in layers]
    score, data = score_output(model), as_dataset(data, model, "test data")

    def accuracy(setting) -> float:
        for (t, v), (theta, v0), (s, d) in zip(layers, base, setting):
            t.CopyFrom(numpy_helper.from_array((theta * s).astype(np.float32), t.name))
            v.CopyFrom(numpy_helper.from_array(((v0 + d * theta) * s).astype(np.float32), v.name))
        out = run(model, data, config, [score])[score]
        return float(np.mean(out.argmax(axis=1) == data.labels))

    setting = [(1.0, 0.0)] * len(layers)
    best = accuracy(setting)
    for i in range(len(layers)):
        grid = [setting[:i] + [(s, d)] + setting[i + 1:] for s in ORACLE_SCALES for d in ORACLE_SHIFTS]
        for trial in grid:
            if (a := accuracy(trial)) > best:
                best, setting = a, trial
    return best


def measure(name: str, T: int, phase: int, with_oracle: bool = False) -> dict:
    """ANN, SNN and rate-model test accuracy (%) of one shipped model converted at T (and the
    rate model after the ``--oracle`` search)."""
    path = model_path(name)
    data = path.with_suffix(".test.npz")
    config = Config(T=T, phase=phase)
    result = onnx2snn.convert(path, path.with_suffix(".calib.npz"), config, data=data)
    quantized = rate_model(result.snn, T)
    pct = lambda v: round(100 * v, 2)  # noqa: E731
    row = {"model": name, "T": T, "phase": phase, "ann": pct(result.evaluation.ann_accuracy),
           "snn": pct(result.evaluation.snn_accuracy),
           "rate_model": pct(evaluate(result.ann, quantized, data, config).snn_accuracy)}
    if with_oracle:
        row["rate_model_oracle"] = pct(oracle(quantized, result.snn, data, config))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["fashion_cnn", "mnist_cnn"])
    p.add_argument("--T", nargs="+", type=int, default=[2, 4, 8])
    p.add_argument("--phase", nargs="+", type=int, default=[1, 2])
    p.add_argument("--oracle", action="store_true", help="add the rate model re-tuned on the test split")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = []
    extra = " rate model, oracle |" if args.oracle else ""
    print("| model | phase | T | ANN | SNN | rate model | ANN - rate model | rate model - SNN |" + extra)
    print("|---|---|---|---|---|---|---|---|" + "---|" * bool(extra))
    for name in args.models:
        for phase in args.phase:
            for T in args.T:
                r = measure(name, T, phase, args.oracle)
                rows.append(r)
                print(f"| {name} | {phase} | {T} | {r['ann']:.2f} | {r['snn']:.2f} | {r['rate_model']:.2f} | "
                      f"{r['ann'] - r['rate_model']:.2f} | {r['rate_model'] - r['snn']:.2f} |"
                      + (f" {r['rate_model_oracle']:.2f} |" if extra else ""), flush=True)
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
