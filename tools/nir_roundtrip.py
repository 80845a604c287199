"""NIR round trip: convert each shipped model for a target profile, write it as NIR, read the file
back with the NIR consumers' own importers, simulate, and compare with onnx2snn's own SNN.

    python -m venv peers && . peers/bin/activate
    pip install -e '.[peers]'                  # torch 2.13 CPU, nir 1.0.8, nirtorch 2.6, snnTorch 1.0.0, Norse 1.1.0
    pip install --no-deps sinabs==3.1.3        # it pins nir<=1.0.4 and a samna stub; works with nir 1.0.8
    python tools/nir_roundtrip.py [--models ...] [-T 8 32] [--targets onnx nir-portable nir-reset-zero]
                                  [--samples N] [--json]

Per model, target and T, the NIR file is written the way the CLI writes it (``--target onnx``: the
exact form, Scale/AvgPool2d nodes and the IF metadata; ``--target nir-portable`` and
``nir-reset-zero``: the portable form, :mod:`onnx2snn.export.portable`), and each consumer reads
only that file:

  nirtorch  nirtorch 2.6's interpreter with a 10-line IF module that follows the IF metadata (reset
            by subtraction, v(0), fire on v >= theta): the reference, what a consumer that honours
            the metadata computes. Flatten and Affine maps as in ``_flatten``/``_affine`` below.
  sinabs    ``sinabs.from_nir`` as shipped: IF -> IAFSqueeze (reset by subtraction, several spikes
            per step when v >= 2 theta, v clipped at -theta, v(0) = 0); input batch-major [B*T, ...].
  norse     ``norse.torch.from_nir`` as shipped: IF -> IAFCell (reset to 0, fire on v > theta,
            v(0) = 0), stepped T times.
  snntorch  ``snntorch.import_nir.import_from_nir`` as shipped. Its IF map builds
            ``Leaky(beta=0.9, init_hidden=False)``, whose (spikes, potential) tuple nirtorch 2.6
            passes to the next layer: it cannot run a graph where an IF neuron feeds a layer. The
            tool therefore also writes the portable form with ``neuron="LIF"`` (a leak-free LIF,
            which snnTorch maps to ``Leaky(beta=1.0, reset to zero)``) and reports it as
            ``snntorch-lif``.
Reported: whether the file loads and runs, test accuracy, agreement of the predictions with
onnx2snn's own SNN, and the spikes per IF layer summed over the test split (onnx2snn's from its
counters, the consumer's from forward hooks on its neuron modules).
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

from common import MODELS, shipped

import onnx2snn
from onnx2snn.export.nir import save_nir
from onnx2snn.simulation.runtime import add_spike_counters, make_session

BATCH = 250


class IFModule(torch.nn.Module):
    """NIR IF with the onnx2snn metadata: u = v + r I; z = [u >= theta]; v = u - theta z (reset
    "zero": z = [u > theta]; v = u - u z)."""

    def __init__(self, node):
        super().__init__()
        meta = node.metadata
        self.zero = meta.get("reset") == "zero"
        assert meta.get("fire") == (">" if self.zero else ">="), meta
        self.theta = torch.tensor(np.asarray(node.v_threshold), dtype=torch.float32)
        self.v0 = torch.tensor(np.asarray(meta["v0"]), dtype=torch.float32)
        self.r = torch.tensor(np.asarray(node.r), dtype=torch.float32)

    def forward(self, x, state=None):
        v = self.v0.expand_as(x) if state is None else state
        u = v + self.r * x
        z = ((u > self.theta) if self.zero else (u >= self.theta)).to(x.dtype)
        return z, u - (u if self.zero else self.theta) * z


def _affine(node) -> torch.nn.Linear:
    """nirtorch 2.6's default Affine map sets ``module.weight.bias`` (torch's random bias stays)."""
    module = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
    module.weight.data = torch.from_numpy(np.asarray(node.weight, np.float32))
    module.bias.data = torch.from_numpy(np.asarray(node.bias, np.float32))
    return module


class _Scale(torch.nn.Module):
    def __init__(self, node):
        super().__init__()
        self.scale = torch.tensor(np.asarray(node.scale), dtype=torch.float32)

    def forward(self, x):
        return x * self.scale


def _flatten(node) -> torch.nn.Flatten:  # NIR shapes have no batch axis
    start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
    end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
    return torch.nn.Flatten(start, end)


class _Counter:
    """Spikes per neuron module, summed over calls (forward hooks)."""

    def __init__(self, module: torch.nn.Module, kinds: tuple):
        self.totals: dict[str, float] = {}
        for name, m in module.named_modules():
            if isinstance(m, kinds):
                m.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def hook(_module, _inputs, output):
            z = output[0] if isinstance(output, tuple) else output
            self.totals[name] = self.totals.get(name, 0.0) + float(z.sum())
        return hook


def _stepped(module, x: np.ndarray, T: int) -> np.ndarray:
    """Mean output over T calls of a stateful module (state passed back in, or kept inside)."""
    total, state = 0, None
    for _ in range(T):
        out = module(torch.from_numpy(x)) if state is None else module(torch.from_numpy(x), state)
        if isinstance(out, tuple):
            out, state = out
        total = total + out
    return (total / T).reshape(len(x), -1).numpy()


def run_nirtorch(graph, x, T):
    import nir
    import nirtorch

    module = nirtorch.nir_to_torch(graph, {nir.IF: IFModule, nir.Scale: _Scale, nir.Flatten: _flatten,
                                           nir.Affine: _affine})
    return module, (IFModule,), lambda xb: _stepped(module, xb, T)


def run_sinabs(graph, x, T):
    import sinabs
    import sinabs.layers as sl

    module = sinabs.from_nir(graph, batch_size=BATCH)

    def run(xb):
        for m in module.modules():  # a fresh state for every batch
            if isinstance(m, sl.StatefulLayer):
                m.reset_states()
        padded = np.concatenate([xb, np.zeros((BATCH - len(xb),) + xb.shape[1:], xb.dtype)])
        out, _ = module(torch.from_numpy(np.repeat(padded, T, axis=0)))
        return out.reshape(BATCH, T, -1).mean(1)[:len(xb)].numpy()
    return module, (sl.IAFSqueeze,), run


def run_norse(graph, x, T):
    import norse.torch as nt
    from norse.torch.module.iaf import IAFCell

    module = nt.from_nir(graph)
    return module, (IAFCell,), lambda xb: _stepped(module, xb, T)


def run_snntorch(graph, x, T):
    import snntorch
    from snntorch.import_nir import import_from_nir

    module = import_from_nir(graph)

    def run(xb):
        for m in module.modules():
            if isinstance(m, snntorch.SpikingNeuron) and getattr(m, "init_hidden", False):
                m.reset_hidden()
        return _stepped(module, xb, T)
    return module, (snntorch.Leaky,), run


CONSUMERS = {"nirtorch": ("IF", run_nirtorch), "sinabs": ("IF", run_sinabs), "norse": ("IF", run_norse),
             "snntorch": ("IF", run_snntorch), "snntorch-lif": ("LIF", run_snntorch)}


def ours(snn, x: np.ndarray, config) -> tuple[np.ndarray, list[float]]:
    counted, counters = add_spike_counters(snn)
    session = make_session(counted, config)
    names = [snn.graph.output[0].name] + [c for c, _ in counters.values()]
    outs, counts = [], np.zeros(len(counters))
    for start in range(0, len(x), BATCH):
        out, *c = session.run(names, {snn.graph.input[0].name: x[start:start + BATCH]})
        outs.append(out)
        counts += [float(np.sum(v)) for v in c]
    return np.concatenate(outs), counts.tolist()


def consume(run, graph, x, y, T: int, ref: np.ndarray) -> dict:
    try:
        module, kinds, step = run(graph, x, T)
        counter = _Counter(module, kinds)
        with torch.no_grad():
            out = np.concatenate([step(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])
    except Exception as exc:  # noqa: BLE001 - a consumer that cannot read or run the file is a result
        if "-v" in sys.argv:
            traceback.print_exc()
        return {"loads": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    pred = out.argmax(1)
    return {"loads": True, "accuracy": float(np.mean(pred == y)), "agreement": float(np.mean(pred == ref)),
            "spikes": [round(v) for v in counter.totals.values()]}


def roundtrip(name: str, target: str, T: int, consumers: list[str], folder: Path, samples: int | None) -> dict:
    import nir

    base = MODELS / name
    config = onnx2snn.Config(T=T, target=target)
    row = {"model": name, "target": target, "T": T, "samples": samples}
    try:
        result = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", config)
    except onnx2snn.Onnx2SnnError as exc:
        return row | {"error": str(exc).splitlines()[0]}
    test = np.load(f"{base}.test.npz")
    x, y = test["x"][:samples].astype(np.float32), test["y"][:samples]
    out, spikes = ours(result.snn, x, config)
    ref = out.argmax(1)
    row |= {"onnx2snn": {"accuracy": float(np.mean(ref == y)), "spikes": [round(v) for v in spikes]}}
    portable = config.profile.portable_nir
    for label in consumers:
        neuron, run = CONSUMERS[label]
        path = folder / f"{name}-{target}-{T}-{neuron}.nir"
        if not path.exists():
            try:
                save_nir(result.snn, path, portable or neuron == "LIF", neuron)
            except onnx2snn.Onnx2SnnError as exc:
                row[label] = {"loads": False, "error": f"not written: {str(exc).splitlines()[0]}"}
                continue
        row[label] = consume(run, nir.read(path), x, y, T, ref)
    return row


def _line(row: dict) -> str:
    if "error" in row:
        return f"{row['model']:14s} {row['target']:13s} T={row['T']:<3d} refused: {row['error']}"
    head = f"{row['model']:14s} {row['target']:13s} T={row['T']:<3d}"
    parts = [f"{head} onnx2snn {100 * row['onnx2snn']['accuracy']:6.2f}"]
    for label in CONSUMERS:
        c = row.get(label)
        if c is None:
            continue
        parts.append(f"{label} " + (f"{100 * c['accuracy']:6.2f} ({100 * c['agreement']:.1f} agree)" if c["loads"]
                                    else "fails"))
    return " | ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=shipped())
    p.add_argument("-T", type=int, nargs="+", default=[8, 32])
    p.add_argument("--targets", nargs="+", default=["onnx", "nir-portable", "nir-reset-zero"])
    p.add_argument("--consumers", nargs="+", default=list(CONSUMERS), choices=list(CONSUMERS))
    p.add_argument("--samples", type=int, default=None,
                   help="the first N samples of each test split (default: all; fashion_cnn has 5,000)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for target in args.targets:
                for T in args.T:
                    rows.append(roundtrip(name, target, T, args.consumers, Path(tmp), args.samples))
                    print(_line(rows[-1]), file=sys.stderr, flush=True)
                    for label in args.consumers:
                        if not rows[-1].get(label, {"loads": True})["loads"]:
                            print(f"    {label}: {rows[-1][label]['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
