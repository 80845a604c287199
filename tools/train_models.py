"""Train and export the shipped models (dev-only: needs the ``train`` extra, i.e. torch).

    pip install -e '.[train]'            # torch==2.13.0 (CPU), scikit-learn, mlxtend
    python tools/train_models.py all     # or: digits_mlp digits_cnn mnist_cnn fashion_cnn ...

Everything is seeded; each model is exported with ``torch.onnx.export`` (TorchScript exporter,
opset 17, dynamic batch, no constant folding so BatchNormalization stays a node of its own) to
``models/NAME.onnx`` beside ``NAME.calib.npz`` and ``NAME.test.npz``
(``x``: uint8 pixels in the model's input layout, ``y``: labels). Input scaling (pixels -> [0, 1])
is the model's first op, so the data files stay small and exact.

``EXTRA`` models are experiments, not shipped: ``all`` leaves them out and they are written to
``models/extra/`` (git-ignored; the end-to-end tests read only ``models/*.onnx``), e.g.
``python tools/train_models.py fashion_qcfs`` (about 13 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import datasets
from architectures import ARCHITECTURES

MODELS = Path(__file__).resolve().parent.parent / "models"

# name: (data set, architecture, epochs, learning rate, test samples shipped (None: all))
SPECS = {
    "digits_mlp": ("digits", "mlp", 60, 2e-3, None),
    "digits_cnn": ("digits", "cnn_small", 60, 2e-3, None),
    "mnist_cnn": ("mnist5k", "cnn_deep", 30, 1e-3, None),
    "fashion_cnn": ("fashion", "vgg_fashion", 8, 1e-3, 5000),
    "digits_resnet": ("digits", "resnet_maxpool", 60, 2e-3, None),
    "fashion_qcfs": ("fashion", "vgg_fashion_qcfs", 8, 1e-3, 5000),
}
EXTRA = {"fashion_qcfs"}  # trained for an experiment (docs/accuracy.md), not shipped


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, seed: int) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        if epoch % max(1, epochs // 6) == 0 or epoch == epochs - 1:
            print(f"  epoch {epoch + 1}/{epochs} loss {total / len(xt):.4f}", flush=True)
    model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        out = torch.cat([model(torch.from_numpy(x[i:i + 500].astype(np.float32)))
                         for i in range(0, len(x), 500)])
    return float((out.argmax(1).numpy() == y).mean())


def export(model: nn.Module, sample: np.ndarray, path: Path) -> None:
    torch.onnx.export(model, (torch.from_numpy(sample[:2].astype(np.float32)),), str(path),
                      dynamo=False, opset_version=17, do_constant_folding=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})


def build(name: str, seed: int = 0) -> dict:
    data_name, arch, epochs, lr, n_test = SPECS[name]
    print(f"{name}: {arch} on {data_name}", flush=True)
    splits = datasets.LOADERS[data_name](seed)
    (xtr, ytr), (xca, yca), (xte, yte) = splits["train"], splits["calib"], splits["test"]
    if n_test is not None:
        keep = np.sort(np.random.default_rng(seed).permutation(len(xte))[:n_test])
        xte, yte = xte[keep], yte[keep]
    torch.manual_seed(seed)
    model = ARCHITECTURES[arch](xtr.shape[1:])
    start = time.time()
    train(model, xtr, ytr, epochs, lr, seed)
    folder = MODELS / "extra" if name in EXTRA else MODELS
    folder.mkdir(parents=True, exist_ok=True)
    export(model, xte, folder / f"{name}.onnx")
    np.savez_compressed(folder / f"{name}.calib.npz", x=xca, y=yca)
    np.savez_compressed(folder / f"{name}.test.npz", x=xte, y=yte)
    info = {"name": name, "data": data_name, "architecture": arch, "train": len(xtr),
            "calib": len(xca), "test": len(xte), "test_accuracy_torch": accuracy(model, xte, yte),
            "train_seconds": round(time.time() - start, 1)}
    print(json.dumps(info), flush=True)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help=f"'all' or some of {sorted(SPECS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    names = [n for n in SPECS if n not in EXTRA] if args.names == ["all"] else args.names
    for name in names:
        build(name, args.seed)


if __name__ == "__main__":
    main()
