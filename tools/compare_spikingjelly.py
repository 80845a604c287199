"""SpikingJelly 2.0 ann2snn vs onnx2snn on the same networks, weights and test splits.

Optional dependencies, never needed by the package or CI. A light install that works here
(spikingjelly's own requirements pull torchvision, torchaudio and a CUDA torch, several GB):

    python -m venv peers && . peers/bin/activate
    pip install torch==2.13.0                       # the local CPU build
    pip install --no-deps spikingjelly==2.0.0       # torchvision/torchaudio are not imported here
    pip install loguru tqdm requests scikit-learn onnx onnxruntime onnx-graphsurgeon
    pip install -e .                                # onnx2snn itself
    python tools/compare_spikingjelly.py [--models digits_cnn digits_resnet] [--T 1 2 4 8 16 32] [--json]

The torch networks are rebuilt from ``tools/architectures.py`` with the weights read from the
shipped ONNX files (initializer names are the state_dict keys), converted with
``ann2snn.FXConverter`` and these recipes:
  sj-max            RateCodingRecipe(mode='max')
  sj-99.9           RateCodingRecipe(mode='99.9%')
  sj-best           RateCodingRecipe(mode='99.9%', channel_wise=True, half_threshold=True
                                     [, pre_spike_maxpool=True on nets with MaxPool])
  sj-ltb            LocalThresholdBalancingRecipe
and simulated step by step as in SpikingJelly's own example (``functional.reset_net``, outputs
summed over steps); accuracy at T is read after step T of a T_max run, which equals a run of
length T because the simulation is causal. onnx2snn runs with its defaults (dual-phase).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from common import ROOT

from architectures import from_onnx
from train_models import SPECS

import onnx2snn


def torch_model(name: str, sample_shape) -> torch.nn.Module:
    return from_onnx(ROOT / "models" / f"{name}.onnx", SPECS[name][1], sample_shape)


def loader(path: Path, batch: int = 100):
    data = np.load(path)
    x, y = torch.from_numpy(data["x"].astype(np.float32)), torch.from_numpy(data["y"])
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]


def simulate(snn: torch.nn.Module, batches, t_max: int, ann_top: np.ndarray):
    """Accuracy and agreement with the ANN's top-1 after each step 1..t_max."""
    from spikingjelly.activation_based import functional

    preds = []
    with torch.no_grad():
        for x, _ in batches:
            functional.reset_net(snn)
            out, steps = None, []
            for _ in range(t_max):
                step = snn(x)
                out = step if out is None else out + step
                steps.append(out.argmax(1).numpy())
            preds.append(np.stack(steps))
    preds = np.concatenate(preds, axis=1)  # [t_max, N]
    labels = np.concatenate([y.numpy() for _, y in batches])
    return (preds == labels).mean(axis=1), (preds == ann_top).mean(axis=1)


def recipes(calib, has_pool: bool) -> dict:
    from spikingjelly.activation_based import ann2snn

    best = dict(mode="99.9%", channel_wise=True, half_threshold=True)
    if has_pool:
        best["pre_spike_maxpool"] = True
    return {
        "sj-max": lambda: ann2snn.RateCodingRecipe(dataloader=calib, mode="max"),
        "sj-99.9": lambda: ann2snn.RateCodingRecipe(dataloader=calib, mode="99.9%"),
        "sj-best": lambda: ann2snn.RateCodingRecipe(dataloader=calib, **best),
        "sj-ltb": lambda: ann2snn.LocalThresholdBalancingRecipe(dataloader=calib),
    }


def compare(name: str, steps: list[int]) -> dict:
    from spikingjelly.activation_based import ann2snn

    base = ROOT / "models" / name
    calib, test = loader(base.with_suffix(".calib.npz")), loader(base.with_suffix(".test.npz"))
    ann = torch_model(name, tuple(calib[0][0].shape[1:]))
    with torch.no_grad():
        ann_top = np.concatenate([ann(x).argmax(1).numpy() for x, _ in test])
    ann_acc = float(np.mean(ann_top == np.concatenate([y.numpy() for _, y in test])))
    has_pool = any(isinstance(m, torch.nn.MaxPool2d) for m in ann.modules())
    rows, agree = {}, {}
    for label, make in recipes(calib, has_pool).items():
        snn = ann2snn.FXConverter(recipe=make(), device="cpu").convert(copy.deepcopy(ann))
        acc, agr = simulate(snn, test, max(steps), ann_top)
        rows[label] = {T: float(acc[T - 1]) for T in steps}
        agree[label] = {T: float(agr[T - 1]) for T in steps}
    result = onnx2snn.convert(base.with_suffix(".onnx"), base.with_suffix(".calib.npz"),
                              onnx2snn.Config(T=steps[0]), data=base.with_suffix(".test.npz"), sweep=steps[1:])
    evals = {steps[0]: result.evaluation, **result.sweep}
    rows["onnx2snn"] = {T: e.snn_accuracy for T, e in evals.items()}
    agree["onnx2snn"] = {T: e.agreement for T, e in evals.items()}
    return {"model": name, "ann_torch": ann_acc, "ann_onnx": result.evaluation.ann_accuracy,
            "snn": rows, "agreement": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["digits_cnn", "digits_resnet", "mnist_cnn", "fashion_cnn"])
    parser.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    onnx2snn.progress.set_enabled(False)
    results = []
    for name in args.models:
        r = compare(name, args.T)
        results.append(r)
        print(f"{name}: ANN {100 * r['ann_onnx']:.2f} % (torch {100 * r['ann_torch']:.2f} %)", flush=True)
        print("  accuracy %    " + "".join(f"T={T:<7}" for T in args.T) + "| agreement with the ANN %")
        for label, accs in r["snn"].items():
            print(f"  {label:<13} " + "".join(f"{100 * accs[T]:<9.2f}" for T in args.T) + "| "
                  + " ".join(f"{100 * r['agreement'][label][T]:6.2f}" for T in args.T), flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
