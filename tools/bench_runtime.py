"""SNN inference speed against the dense floor and SpikingJelly 2.0; peak memory; calibration memory.

    python tools/bench_runtime.py [--models vgg32 digits_cnn mnist_cnn fashion_cnn digits_resnet]
                                  [--B 1 64] [--T 4 8 16 32] [--repeats 7] [--threads 2] [--json]

Needs torch (the ``train`` extra) to build the VGG-like net; SpikingJelly is optional (install as in
``tools/compare_spikingjelly.py``'s docstring; without it its column is null).

For each model, B and T, measured side by side in one process, in blocks per column alternating
over two rounds (see ``measure``), median of ``repeats`` (5x as many at B = 1, where one call takes
milliseconds):
  ours        one ``run()`` of the converted (time-batched) model on a batch of B, as onnx2snn runs
              it (``make_session``: IF loops of large layers as a Scan, ``unroll(snn, "auto")``)
  stock       the converted file as it is, in stock onnxruntime (the IFNeuron function body)
  steps       the same with every IF loop written out step by step (``unroll(snn, "steps")``: what
              ``--unroll`` writes, and the IFNeuron function body)
  scan        the same with every IF loop as a Scan (``unroll(snn, "scan")``)
  floor       T x (one ANN run on the same B)      -- the dense floor
  ann_TB      one ANN run on a batch of T*B
  stepwise    T session calls of the T=1 graph with the state fed back (``StepwiseSNN``)
  sj          SpikingJelly 2.0: ``ann2snn.FXConverter`` + ``RateCodingRecipe(mode='max')``,
              simulated step by step as in its examples (``reset_net``, T forward calls), torch
              with the same number of threads
``vgg32`` is a VGG-like 3x32x32 net (6 conv/BN/ReLU, 3 AvgPool, 2 linear; He-initialised weights,
random BN statistics; inputs uniform in [0, 1]): its speed does not depend on training.
The SNNs are phase-1 conversions (phase 2 changes thresholds, not the graph or its cost).

Peak memory (``--memory``, on by default): each of ours / ANN(T*B) / SpikingJelly at the headline
point (first model, B = 64, T = 16) runs in its own child process, and the child's peak RSS
(``VmHWM``) is reported. Calibration memory (``--calib-memory 1000 10000``): a child runs
``onnx2snn.convert`` (statistics, phase 1, phase 2) on N random samples for ``vgg32`` and reports
its peak RSS next to the size of the data itself.

``--profile [B,T]`` prints onnxruntime's per-op-type profile of our SNN instead (first model,
default B = 64, T = 16): where the time goes.

``--json`` prints one object on the last line of stdout with ``rows``, ``memory``, ``calib_memory``,
``ratio_to_dense_floor`` (ours / floor at B = 64, T = 16 on the first model),
``ratio_to_dense_floor_b1`` (the same at B = 1) and ``ratio_to_spikingjelly`` (ours / sj at B = 64,
T = 16; null without SpikingJelly) and ``ann_TB_to_spikingjelly`` (ANN(T*B) / sj there: what
ours / sj would be if the IF neurons cost nothing and the convolutions ran as in the ANN on T*B;
``ann_TB_to_spikingjelly_b1``: the same at B = 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


from onnx2snn.export import unroll

import bench_memory
from runtime_cases import SHIPPED, build, convert, runners, spikingjelly_net, stock_session

def measure(fns: dict, repeats: int, rounds: int = 2) -> dict:
    """Median seconds of each callable. In ``rounds`` rounds each callable runs as a block: a pause,
    one warm-up call, then ``repeats / rounds`` timed calls. Blocks keep one framework's idle
    threads (torch's OpenMP pool, onnxruntime's spinning workers) from slowing another's timed
    calls on the same cores; the rounds spread drift over all columns."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            time.sleep(0.2)
            fn()
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(models, batches, steps, repeats, threads) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            built = build(name, Path(tmp))
            sj_net = spikingjelly_net(built[2], built[1])
            for B in batches:
                for T in steps:
                    t = measure(runners(name, built, T, B, threads, sj_net), repeats * (5 if B == 1 else 1))
                    row = {"model": name, "B": B, "T": T, "ours": t["ours"], "floor": T * t["ann_B"],
                           "ann_TB": t["ann_TB"], "stepwise": t["stepwise"], "sj": t.get("sj"),
                           "stock": t["stock"], "steps": t["steps"], "scan": t["scan"]}
                    row["ratio_to_floor"] = row["ours"] / row["floor"]
                    row["ratio_to_sj"] = row["ours"] / row["sj"] if row["sj"] else None
                    rows.append(row)
                    print(_line(row), file=sys.stderr, flush=True)
    return rows


def _line(r: dict) -> str:
    ms = lambda v: f"{1000 * v:9.2f}" if v is not None else "        -"  # noqa: E731
    ratio = lambda v: f"{v:6.2f}" if v is not None else "     -"  # noqa: E731
    return (f"{r['model']:14s} B={r['B']:<3d} T={r['T']:<3d} ours {ms(r['ours'])} ms  stock {ms(r['stock'])}"
            f"  steps {ms(r['steps'])}"
            f"  scan {ms(r['scan'])}  floor {ms(r['floor'])}"
            f"  ann(TB) {ms(r['ann_TB'])}  stepwise {ms(r['stepwise'])}  sj {ms(r['sj'])}"
            f"  ours/floor {ratio(r['ratio_to_floor'])}  ours/sj {ratio(r['ratio_to_sj'])}")


def profile(name: str, B: int, T: int, threads: int) -> dict[str, float]:
    """onnxruntime's own profile of our SNN as ``make_session`` runs it (see :func:`op_profile`)."""
    with tempfile.TemporaryDirectory() as tmp:
        built = build(name, Path(tmp))
        ann, _, _, snn, _ = convert(built[0], built[1], T, threads)
        x = {ann.graph.input[0].name: built[1]["x"][:B].astype(np.float32)}
        return op_profile(unroll(snn, "auto"), x, threads)


def op_profile(model, feeds: dict, threads: int) -> dict[str, float]:
    """Mean ms per op type of ``model`` over 4 runs (the first included) in onnxruntime's profile;
    a Scan's time includes its body's ops, listed as "in Scan: <op>"."""
    import collections

    with tempfile.TemporaryDirectory() as tmp:
        session = stock_session(model, threads, profile=str(Path(tmp) / "profile"))
        for _ in range(4):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            inside = "/step/" in e["name"]  # a Scan body's op (names from export/unrolled.py)
            per_op[("  in Scan: " if inside else "") + e["args"]["op_name"]] += e["dur"] / 4 / 1000  # 4 runs, us -> ms
    return dict(per_op.most_common())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["vgg32", *SHIPPED[:4]])
    p.add_argument("--B", nargs="+", type=int, default=[1, 64])
    p.add_argument("--T", nargs="+", type=int, default=[4, 8, 16, 32])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    p.add_argument("--calib-memory", nargs="*", type=int, default=[1000, 10000])
    p.add_argument("--json", action="store_true")
    p.add_argument("--profile", nargs="?", const="64,16", metavar="B,T",
                   help="only print the op-type profile of our SNN (first model; default B = 64, T = 16)")
    args = p.parse_args()
    if args.profile:
        B, T = (int(v) for v in args.profile.split(","))
        ops = profile(args.models[0], B, T, args.threads)
        total = sum(ms for op, ms in ops.items() if not op.startswith(" "))  # a Scan includes its body
        for op, ms in ops.items():
            print(f"{op:16s} {ms:8.1f} ms  {100 * ms / total:5.1f} %")
        return
    import torch
    torch.set_num_threads(args.threads)
    rows = bench(args.models, args.B, args.T, args.repeats, args.threads)
    head = args.models[0]
    memory, calib_mem = bench_memory.measure(head, args.threads, not args.no_memory, args.calib_memory)
    pick = lambda B: next((r for r in rows if r["model"] == head and r["B"] == B and r["T"] == 16), None)  # noqa: E731
    r64, r1 = pick(64), pick(1)
    result = {"rows": rows, "memory": memory, "calib_memory": calib_mem, "threads": args.threads,
              "repeats": args.repeats,
              "ratio_to_dense_floor": r64["ratio_to_floor"] if r64 else None,
              "ratio_to_dense_floor_b1": r1["ratio_to_floor"] if r1 else None,
              "ratio_to_spikingjelly": r64["ratio_to_sj"] if r64 else None,
              "ann_TB_to_spikingjelly": r64["ann_TB"] / r64["sj"] if r64 and r64["sj"] else None,
              "ann_TB_to_spikingjelly_b1": r1["ann_TB"] / r1["sj"] if r1 and r1["sj"] else None}
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
