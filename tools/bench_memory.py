"""Peak memory for ``tools/bench_runtime.py``: each measurement in its own child process.

    python tools/bench_memory.py --child KIND MODEL B T THREADS SAMPLES   (run by bench_runtime)

KIND ``ours`` / ``ann`` / ``sj``: build the model's runners (``runtime_cases.runners``) and call ours,
ANN(T*B) or SpikingJelly three times; ``calib``: ``onnx2snn.convert`` (statistics, phase 1, phase 2)
of ``vgg32`` on SAMPLES random inputs. The child prints its peak RSS (``VmHWM``) as JSON.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


import common  # noqa: F401 - the package importable from a checkout
import onnx2snn


def measure(head: str, threads: int, memory: bool, calib_sizes) -> tuple[dict, list[dict]]:
    """Peak RSS of ours / ANN(T*B) / SpikingJelly on ``head`` at B = 64, T = 16 (if ``memory``) and
    of a vgg32 calibration on each of ``calib_sizes`` samples; printed to stderr and returned."""
    peaks = {k: spawn(k, head, 64, 16, threads, 0) for k in ("ours", "ann", "sj")} if memory else {}
    calib = [spawn("calib", "vgg32", 64, 16, threads, n) for n in calib_sizes]
    for k, v in peaks.items():
        print(f"peak RSS {k:5s} ({head}, B=64, T=16): {v['peak_rss_mib']} MiB", file=sys.stderr)
    for c in calib:
        print(f"calibration of vgg32 on {c['samples']} samples: peak RSS {c['peak_rss_mib']:.0f} MiB "
              f"(data itself {c['data_mib']:.0f} MiB), {c['seconds']:.1f} s", file=sys.stderr)
    return peaks, calib


def child(kind: str, name: str, B: int, T: int, threads: int, samples: int) -> dict:
    """Run one thing in this (child) process and return its peak RSS in MiB."""
    with tempfile.TemporaryDirectory() as tmp:
        from runtime_cases import build, runners, spikingjelly_net

        built = build(name, Path(tmp))
        if kind == "calib":
            rng = np.random.default_rng(2)
            x = rng.uniform(0, 1, (samples, 3, 32, 32)).astype(np.float32)
            start = time.perf_counter()
            onnx2snn.convert(built[0], {"x": x}, onnx2snn.Config(T=T, threads=threads))
            return {"samples": samples, "data_mib": x.nbytes / 2**20, "peak_rss_mib": _peak(),
                    "seconds": time.perf_counter() - start}
        import torch
        torch.set_num_threads(threads)
        sj_net = spikingjelly_net(built[2], built[1]) if kind == "sj" else None
        if kind == "sj" and sj_net is None:
            return {"kind": kind, "peak_rss_mib": None}
        before = _peak()
        fns = runners(name, built, T, B, threads, sj_net)
        key = {"ours": "ours", "ann": "ann_TB", "sj": "sj"}[kind]
        for _ in range(3):
            fns[key]()
        return {"kind": kind, "peak_rss_mib": _peak(), "before_mib": before}


def _peak() -> float:
    """Peak resident memory of this process in MiB: VmHWM (ru_maxrss survives exec on Linux, so a
    child would report its parent's peak)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spawn(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.exit(print(__doc__))
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 8:
        sys.exit(__doc__)
    kind, name, B, T, threads, samples = sys.argv[2:]
    print(json.dumps(child(kind, name, int(B), int(T), int(threads), int(samples))))
