"""How close to the dense floor can an SNN get in onnxruntime when its IF op is not fused into the convolution?

    python tools/bench_bound.py [--models vgg32] [--B 1 64] [--T 16] [--abs 1 2 5] [--repeats 7] [--threads 2] [--json]

An IF layer must at least read each step's current and write its spikes: one elementwise pass over
the layer's tensor that onnxruntime cannot fuse into the convolution before it (it fuses ReLU into
its NCHWc convolutions, not a recurrence over time steps), and around any op outside its NCHWc set
-- every standard op an IF lowering needs, and any custom op -- onnxruntime converts the tensor
from its blocked NCHWc layout and back (ReorderOutput / ReorderInput). The cheapest such op that
leaves the ANN's values unchanged is ``Abs`` after each ReLU (its profile shows the same reorders
as the SNN's). So this tool runs, side by side in one process (``bench_runtime.measure``: blocks per
column, two rounds):

  ours       the converted SNN as onnx2snn runs it (``make_session``), on a batch of B
  floor      T x (ANN on B)                   -- the issue's dense floor
  ann_TB     the ANN on T*B                   -- what time-batching gives the linear ops
  ann_TB+1   the ANN on T*B with one Abs after every ReLU: a lower bound for ours with any IF
             op not fused into the convolution (standard ops or a custom one)
  ann_TB+2   the same with two Abs: a lower bound for any IF lowering in standard ops. Each
             step must write two tensors that the next step reads back, the potential and the
             spikes (a standard op cannot keep the potential in registers across steps as a fused
             kernel would), i.e. at least two elementwise passes over the layer's T*B currents
  ann_TB+5   the same with five Abs: the memory traffic of one IF step written as five
             elementwise ops (what the IFNeuron body does per step; ours does it T times on
             B-sized slices instead of once on T*B)
  loop2_scan, loop2_steps
             the ANN on T*B with a two-op recurrence over the T steps after every ReLU (values
             unchanged), as one Scan or written out step by step (``with_loop``): a lower bound
             for any IF loop in standard ops with onnxruntime's cost per loop iteration and per
             node, which the Abs columns leave out (it matters at B = 1)
(``--abs`` picks the counts k of the ann_TB+k columns.)

all in onnx2snn sessions (``make_session``, as ``tools/bench_runtime.py`` runs its ANN columns),
and prints each over the floor and over ann_TB (steadier: the floor, T calls on B, varies
more between runs than one call on T*B). Lines on stderr; ``--json``: one object on the last line
of stdout. ``--profile``: onnxruntime's per-op-type profile of ann_TB+1 instead (B = 64). Needs
torch for ``vgg32`` (as ``tools/bench_runtime.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper


import common  # noqa: F401 - the package importable from a checkout
from bench_runtime import measure, op_profile
from runtime_cases import build, convert
from onnx2snn.simulation.runtime import make_session


def after_relus(ann: onnx.ModelProto, insert, initializers=()) -> onnx.ModelProto:
    """A copy of ``ann`` with the nodes ``insert(x, y)`` after every Relu: each Relu now writes ``x``
    (its output name + "/relu") and the inserted nodes compute its old output ``y`` from it."""
    model = onnx.ModelProto()
    model.CopyFrom(ann)
    model.graph.initializer.extend(initializers)
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type == "Relu":
            out = node.output[0]
            node.output[0] = f"{out}/relu"
            nodes += insert(f"{out}/relu", out)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def with_abs(ann: onnx.ModelProto, k: int) -> onnx.ModelProto:
    """``ann`` with ``k`` Abs nodes after every Relu (values unchanged: Abs(ReLU(z)) = ReLU(z))."""
    if k == 0:
        return ann
    def chain(x, y):
        names = [x] + [f"{y}/abs{i}" for i in range(k - 1)] + [y]
        return [helper.make_node("Abs", [a], [b], name=f"{b}/node") for a, b in zip(names, names[1:])]
    return after_relus(ann, chain)


def with_loop(ann: onnx.ModelProto, T: int, form: str) -> onnx.ModelProto:
    """``ann`` with a two-op recurrence over T steps after every Relu: with the Relu's output viewed
    as T steps x_t, ``v_t = v_(t-1) + x_t`` and the output ``v_t - v_(t-1)`` (= x_t up to rounding).
    Two ops per step is the fewest any IF step in standard ops needs: it writes two tensors (the
    potential and the spikes) and a standard elementwise op writes one. ``form``: one ``Scan``
    over the steps (its body the two ops), or ``steps`` (Split, two ops per step, Concat), as the
    two forms of :mod:`onnx2snn.snn.unrolled`."""
    consts = [helper.make_tensor("loop/time_head", onnx.TensorProto.INT64, [2], [T, -1]),
              helper.make_tensor("loop/zero", onnx.TensorProto.INT64, [], [0]),
              helper.make_tensor("loop/ones", onnx.TensorProto.INT64, [T], [1] * T)]
    return after_relus(ann, lambda x, y: _loop_nodes(x, y, T, form), consts)


def _loop_nodes(x: str, y: str, T: int, form: str) -> list:
    """Nodes of :func:`with_loop` for one Relu output ``x``, written to ``y``."""
    n = lambda op, ins, out, **kw: helper.make_node(op, ins, [f"{y}/{out}"], name=f"{y}/{out}", **kw)  # noqa: E731
    nodes = [n("Reshape", [x, "loop/time_head"], "steps"), n("Gather", [f"{y}/steps", "loop/zero"], "first"),
             n("Sub", [f"{y}/first", f"{y}/first"], "v0"), n("Shape", [x], "shape")]
    if form == "scan":
        value = lambda name: helper.make_tensor_value_info(f"{y}/b/{name}", onnx.TensorProto.FLOAT, None)  # noqa: E731
        body = helper.make_graph([helper.make_node("Add", [f"{y}/b/v", f"{y}/b/x"], [f"{y}/b/w"]),
                                  helper.make_node("Sub", [f"{y}/b/w", f"{y}/b/v"], [f"{y}/b/s"])],
                                 f"{y}/b", [value("v"), value("x")], [value("w"), value("s")])
        nodes.append(helper.make_node("Scan", [f"{y}/v0", f"{y}/steps"], [f"{y}/vT", f"{y}/spikes"],
                                      name=f"{y}/scan", num_scan_inputs=1, body=body))
    else:
        xs = [f"{y}/x{t}" for t in range(T)]
        nodes.append(helper.make_node("Split", [f"{y}/steps", "loop/ones"], xs, name=f"{y}/split", axis=0))
        for t in range(T):
            v = f"{y}/v0" if t == 0 else f"{y}/v{t}"
            nodes += [helper.make_node("Add", [v, xs[t]], [f"{y}/v{t + 1}"], name=f"{y}/add{t}"),
                      helper.make_node("Sub", [f"{y}/v{t + 1}", v], [f"{y}/s{t}"], name=f"{y}/sub{t}")]
        nodes.append(helper.make_node("Concat", [f"{y}/s{t}" for t in range(T)], [f"{y}/spikes"],
                                      name=f"{y}/concat", axis=0))
    return nodes + [helper.make_node("Reshape", [f"{y}/spikes", f"{y}/shape"], [y], name=f"{y}/back")]


def row(name: str, built, B: int, T: int, repeats: int, threads: int, ks=(1, 2, 5)) -> dict:  # noqa: PLR0913
    """Median seconds of every column for one model, B and T, and their ratios to the floor."""
    path, calib, _ = built
    ann, _, _, snn, config = convert(path, calib, T, threads)
    x = calib["x"][np.random.default_rng(1).integers(0, len(calib["x"]), B)].astype(np.float32)
    xin = ann.graph.input[0].name
    ours = make_session(snn, config)
    plain = make_session(ann, config)
    x_tb = np.concatenate([x] * T)
    on_tb = lambda model: (lambda s: lambda: s.run(None, {xin: x_tb}))(make_session(model, config))  # noqa: E731
    columns = {"ours": lambda: ours.run(None, {xin: x}),
               "ann_B": lambda: plain.run(None, {xin: x}),
               "ann_TB": lambda: plain.run(None, {xin: x_tb}),
               **{f"ann_TB+{k}": on_tb(with_abs(ann, k)) for k in ks},
               **{f"loop2_{form}": on_tb(with_loop(ann, T, form)) for form in ("scan", "steps")}}
    t = measure(columns, repeats * (5 if B == 1 else 1))
    floor = T * t.pop("ann_B")
    out = {"model": name, "B": B, "T": T, "floor_ms": round(1e3 * floor, 2)}
    for column, seconds in t.items():
        out[f"{column}_ms"] = round(1e3 * seconds, 2)
        out[f"{column}/floor"] = round(seconds / floor, 2)
    for column in t:  # needs no floor: steadier
        if column != "ann_TB":
            out[f"{column}/ann_TB"] = round(t[column] / t["ann_TB"], 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["vgg32"])
    p.add_argument("--B", nargs="+", type=int, default=[1, 64])
    p.add_argument("--T", nargs="+", type=int, default=[16])
    p.add_argument("--abs", nargs="+", type=int, default=[1, 2, 5], help="the k of the ann_TB+k columns")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--profile", action="store_true",
                   help="only print onnxruntime's op profile of ann_TB+1 (first model, B = 64, first T)")
    args = p.parse_args()
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            path, calib, _ = build(args.models[0], Path(tmp))
            ann = onnx.load(str(path))
            x = np.concatenate([calib["x"][:64].astype(np.float32)] * args.T[0])
            for op, ms in op_profile(with_abs(ann, 1), {ann.graph.input[0].name: x}, args.threads).items():
                print(f"{op:16s} {ms:8.1f} ms")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            built = build(name, Path(tmp))
            for B in args.B:
                for T in args.T:
                    rows.append(row(name, built, B, T, args.repeats, args.threads, args.abs))
                    print("  ".join(f"{k} {v}" for k, v in rows[-1].items()), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
