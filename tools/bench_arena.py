"""What one run of a converted SNN really holds, with and without onnxruntime's CPU arena.

    python tools/bench_arena.py SNN.onnx DATA.npz --samples 16 [--no-arena]

Runs the SNN once on one sample (warm-up), then once on ``--samples`` samples, and prints the
growth of this process's peak RSS during that run (``/proc/self/clear_refs``: Linux only; run each
setting in its own process, as below) next to the budget's liveness estimate of the run
(:func:`onnx2snn.simulation.footprint.footprint`), and the run's seconds. Why: ``SNN_SAFETY`` in
onnx2snn/simulation/budget.py, the margin whole-SNN runs take over their estimate.

    python tools/bench_arena.py densenet121.T8.snn.onnx test224_32.npz --samples 16
    python tools/bench_arena.py densenet121.T8.snn.onnx test224_32.npz --samples 16 --no-arena
"""

from __future__ import annotations

import argparse
import time

import onnx
import onnxruntime as ort

import common  # noqa: F401 - the package importable from a checkout
from onnx2snn import Config
from onnx2snn.data import as_dataset
from onnx2snn.ops import if_neuron
from onnx2snn.simulation import runtime
from onnx2snn.simulation.budget import return_freed_memory
from onnx2snn.simulation.footprint import footprint


def status(key: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("snn")
    p.add_argument("data")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--no-arena", action="store_true", help="sessions without onnxruntime's CPU arena")
    args = p.parse_args()
    snn = onnx.load(args.snn)
    data = as_dataset(args.data, snn, "data")
    names = [o.name for o in snn.graph.output]
    T = if_neuron.time_steps(snn) or 1
    estimate = footprint(snn, names, T).peak(args.samples, T)
    return_freed_memory()
    if args.no_arena:
        runtime._ARENA.append(False)  # no shared arena: sessions get their own, switched off below
        base = ort.SessionOptions

        class NoArena(base):
            def __init__(self):
                super().__init__()
                self.enable_cpu_mem_arena = False

        ort.SessionOptions = NoArena
    session = runtime.make_session(snn, Config())
    session.run(names, {k: v[:1] for k, v in data.inputs.items()})
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # the peak RSS restarts from the current RSS
    before = status("VmRSS")
    start = time.perf_counter()
    session.run(names, {k: v[:args.samples] for k, v in data.inputs.items()})
    seconds = time.perf_counter() - start
    held = status("VmHWM") - before
    print(f"{'no arena' if args.no_arena else 'arena'}, {args.samples} samples x {T} steps: "
          f"held {held / 2**20:.0f} MiB, estimate {estimate / 2**20:.0f} MiB ({held / estimate:.2f}x), "
          f"{seconds:.1f} s")


if __name__ == "__main__":
    main()
