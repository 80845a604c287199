"""How much of the conversion loss is the quantization to T levels, and how much the spiking dynamics?

    python tools/rate_model.py [--models fashion_cnn mnist_cnn] [--T 2 4 8] [--phase 1 2] [--json]

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
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import onnx2snn  # noqa: E402
from ablation import model_path  # noqa: E402
from onnx2snn import Config  # noqa: E402
from onnx2snn.evaluation import evaluate  # noqa: E402
from onnx2snn.ops import if_neuron  # noqa: E402


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


def measure(name: str, T: int, phase: int) -> dict:
    """ANN, SNN and rate-model test accuracy (%) of one shipped model converted at T."""
    path = model_path(name)
    data = path.with_suffix(".test.npz")
    config = Config(T=T, phase=phase)
    result = onnx2snn.convert(path, path.with_suffix(".calib.npz"), config, data=data)
    quantized = evaluate(result.ann, rate_model(result.snn, T), data, config)
    pct = lambda v: round(100 * v, 2)  # noqa: E731
    return {"model": name, "T": T, "phase": phase, "ann": pct(result.evaluation.ann_accuracy),
            "snn": pct(result.evaluation.snn_accuracy), "rate_model": pct(quantized.snn_accuracy)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["fashion_cnn", "mnist_cnn"])
    p.add_argument("--T", nargs="+", type=int, default=[2, 4, 8])
    p.add_argument("--phase", nargs="+", type=int, default=[1, 2])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = []
    print("| model | phase | T | ANN | SNN | rate model | ANN - rate model | rate model - SNN |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for phase in args.phase:
            for T in args.T:
                r = measure(name, T, phase)
                rows.append(r)
                print(f"| {name} | {phase} | {T} | {r['ann']:.2f} | {r['snn']:.2f} | {r['rate_model']:.2f} | "
                      f"{r['ann'] - r['rate_model']:.2f} | {r['rate_model'] - r['snn']:.2f} |", flush=True)
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
