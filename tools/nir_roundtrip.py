"""NIR round trip: write the converted SNN as NIR, read it back with ``nir``, simulate it with
independent NIR consumers, and compare spike counts and accuracy with onnx2snn's own runtime.

    python -m venv peers && . peers/bin/activate    # then: torch 2.13 CPU, pip install nir nirtorch snntorch sinabs
    python tools/nir_roundtrip.py [--models digits_mlp digits_cnn mnist_cnn] [-T 8] [--json]

Consumers (all read only the .nir file):
  nirtorch  nirtorch 2.6's NIR interpreter (``nirtorch.nir_to_torch``: it wires the graph, sums
            edges, and maps Conv2d/Affine/AvgPool2d/Flatten with its default torch modules). NIR's IF
            is mapped to a 10-line torch module that follows the IF node's metadata (reset by
            subtraction, v(0), fire on v >= theta, one spike per step) -- the semantics the
            metadata documents; Scale to a multiplication; Flatten with start_dim + 1 (NIR shapes have
            no batch axis, as sinabs reads them; nirtorch's default map passes start_dim unchanged
            and would flatten the batch); Affine with its bias (nirtorch 2.6's default map leaves
            the torch layer's random bias in place: it assigns ``weight.bias``).
  sinabs    ``sinabs.from_nir`` as shipped: NIR IF -> IAFSqueeze (multi-spike, v clipped at -theta,
            v(0) = 0); it has no AvgPool2d/Scale import, so it is expected to fail on our graphs.
  snntorch  ``snntorch.import_nirtorch.import_from_nir`` as shipped: NIR IF -> Leaky(beta=0.9) and
            one threshold per layer only; expected to refuse per-channel thresholds.
Reported per model: test accuracy of onnx2snn and of each consumer, prediction agreement, and the
total spike count per IF layer (onnx2snn's from its spike counters, the consumer's from its IF
modules) on the shipped test split.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

from common import ROOT

import onnx2snn
from onnx2snn.export.nir import save_nir
from onnx2snn.simulation.runtime import add_spike_counters, make_session


class IFModule(torch.nn.Module):
    """NIR IF with the onnx2snn metadata: u = v + I; z = [u >= theta]; v = u - theta z."""

    def __init__(self, node):
        super().__init__()
        meta = node.metadata
        assert meta.get("reset") == "subtract" and meta.get("fire") == ">=", meta
        self.theta = torch.tensor(np.asarray(node.v_threshold), dtype=torch.float32)
        self.v0 = torch.tensor(np.asarray(meta["v0"]), dtype=torch.float32)
        self.r = torch.tensor(np.asarray(node.r), dtype=torch.float32)
        self.spikes = 0.0

    def forward(self, x, state=None):
        v = self.v0.expand_as(x) if state is None else state
        u = v + self.r * x
        z = (u >= self.theta).to(x.dtype)
        self.spikes += float(z.sum())
        return z, u - self.theta * z


def affine(node) -> torch.nn.Linear:
    """nirtorch 2.6's default Affine map sets ``module.weight.bias`` instead of ``module.bias`` and
    so keeps torch's random bias; this is the same map with the bias set."""
    module = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
    module.weight.data = torch.from_numpy(np.asarray(node.weight, np.float32))
    module.bias.data = torch.from_numpy(np.asarray(node.bias, np.float32))
    return module


class ScaleModule(torch.nn.Module):
    def __init__(self, node):
        super().__init__()
        self.scale = torch.tensor(np.asarray(node.scale), dtype=torch.float32)

    def forward(self, x):
        return x * self.scale


def run_nirtorch(path: Path, x: np.ndarray, T: int):
    import nir
    import nirtorch

    graph = nir.read(path)
    flatten = lambda n: torch.nn.Flatten(n.start_dim + 1, n.end_dim)  # noqa: E731 - NIR shapes have no batch
    module = nirtorch.nir_to_torch(graph, {nir.IF: IFModule, nir.Scale: ScaleModule, nir.Flatten: flatten,
                                           nir.Affine: affine})
    ifs = {name: m for name, m in module.named_modules() if isinstance(m, IFModule)}
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), 200):
            xb, state, total = torch.from_numpy(x[start:start + 200]), None, 0
            for _ in range(T):
                out, state = module(xb, state) if state is not None else module(xb)
                total = total + out
            outs.append((total / T).numpy())
    return np.concatenate(outs), {n: m.spikes for n, m in ifs.items()}


def run_sinabs(path: Path, x: np.ndarray, T: int):
    import nir
    import sinabs

    model = sinabs.from_nir(nir.read(path), batch_size=len(x))
    with torch.no_grad():
        out = model(torch.from_numpy(np.repeat(x, T, axis=0)))
    return out.reshape(T, len(x), -1).mean(0).numpy(), {}


def run_snntorch(path: Path, x: np.ndarray, T: int):
    import nir
    from snntorch.import_nir import import_from_nir

    module = import_from_nir(nir.read(path))
    total, state = 0, None
    with torch.no_grad():
        for _ in range(T):
            out, state = module(torch.from_numpy(x), state) if state is not None else module(torch.from_numpy(x))
            total = total + out
    return (total / T).numpy(), {}


def ours(snn, x: np.ndarray, config):
    counted, counters = add_spike_counters(snn)
    session = make_session(counted, config)
    names = [o.name for o in snn.graph.output][:1] + [c for c, _ in counters.values()]
    out, *counts = session.run(names, {snn.graph.input[0].name: x})
    return out, {n: float(c) for n, c in zip(counters, counts)}


def roundtrip(name: str, T: int, folder: Path) -> dict:
    base = ROOT / "models" / name
    config = onnx2snn.Config(T=T)
    result = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", config, data=f"{base}.test.npz")
    path = folder / f"{name}.nir"
    save_nir(result.snn, path)
    test = np.load(f"{base}.test.npz")
    x, y = test["x"].astype(np.float32), test["y"]
    ref, ref_spikes = ours(result.snn, x, config)
    row = {"model": name, "T": T, "samples": len(x), "onnx2snn_accuracy": float(np.mean(ref.argmax(1) == y)),
           "onnx2snn_spikes": ref_spikes, "consumers": {}}
    for label, fn in (("nirtorch", run_nirtorch), ("sinabs", run_sinabs), ("snntorch", run_snntorch)):
        try:
            out, spikes = fn(path, x, T)
            row["consumers"][label] = {
                "accuracy": float(np.mean(out.argmax(1) == y)),
                "agreement": float(np.mean(out.argmax(1) == ref.argmax(1))),
                "max_abs_diff": float(np.abs(out - ref).max()), "spikes": list(spikes.values())}
        except Exception as exc:  # noqa: BLE001 - a consumer that cannot read our graph is a result
            row["consumers"][label] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            if "-v" in sys.argv:
                traceback.print_exc()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["digits_mlp", "digits_cnn", "mnist_cnn"])
    p.add_argument("-T", type=int, default=8)
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            row = roundtrip(name, args.T, Path(tmp))
            rows.append(row)
            print(f"{name} T={args.T}: onnx2snn {100 * row['onnx2snn_accuracy']:.2f} %, spikes per layer "
                  f"{[round(v) for v in row['onnx2snn_spikes'].values()]}", file=sys.stderr)
            for label, c in row["consumers"].items():
                if "error" in c:
                    print(f"   {label:9s} failed: {c['error']}", file=sys.stderr)
                else:
                    print(f"   {label:9s} {100 * c['accuracy']:.2f} %, agreement {100 * c['agreement']:.2f} %, "
                          f"max |diff| {c['max_abs_diff']:.2e}, spikes {[round(v) for v in c['spikes']]}",
                          file=sys.stderr)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
