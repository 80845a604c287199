"""Models produced by other exporters, shipped in models/exporters/ for the exporter tests.

    pip install -e '.[train]' skl2onnx
    python tools/export_variants.py

* ``digits_cnn_dynamo``, ``digits_resnet_dynamo``: the shipped digits networks (same weights, read
  from models/*.onnx) exported by ``torch.onnx.export(..., dynamo=True)`` with a dynamic batch; that
  exporter folds BatchNorm, flattens with Reshape, targets opset 18+ and writes the weights to an
  external ``.onnx.data`` file.
* ``digits_sklearn`` / ``digits_sklearn_zipmap``: ``StandardScaler + MLPClassifier(64, 32)`` on the
  flattened digits via skl2onnx (MatMul + Add layers, an ``ai.onnx.ml`` Scaler in front and an
  ArgMax / ArrayFeatureExtractor / ZipMap tail with ``label`` and ``probabilities`` outputs), with
  ZipMap off and on.
* ``diabetes_sklearn_regressor``: ``StandardScaler + MLPRegressor(32, 16)`` on scikit-learn's
  diabetes data (442 real patients, 10 features; a regression, one float output).
Each model has NAME.calib.npz and NAME.test.npz beside it (``x``, ``y``).
"""

from __future__ import annotations

import argparse
import datasets
import numpy as np
from common import MODELS, ROOT

OUT = MODELS / "exporters"


def save_data(name: str, calib, test) -> None:
    np.savez_compressed(OUT / f"{name}.calib.npz", x=calib[0], y=calib[1])
    np.savez_compressed(OUT / f"{name}.test.npz", x=test[0], y=test[1])


def dynamo(name: str, arch: str) -> None:
    import torch
    from architectures import from_onnx

    splits = datasets.digits()
    model = from_onnx(ROOT / "models" / f"{name}.onnx", arch, splits["test"][0].shape[1:])
    sample = torch.from_numpy(splits["test"][0][:2].astype(np.float32))
    for old in OUT.glob(f"{name}_dynamo.onnx*"):
        old.unlink()
    torch.onnx.export(model, (sample,), str(OUT / f"{name}_dynamo.onnx"), dynamo=True, external_data=True,
                      input_names=["image"], output_names=["scores"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    drop_stack_traces(OUT / f"{name}_dynamo.onnx")
    save_data(f"{name}_dynamo", splits["calib"], splits["test"])


def drop_stack_traces(path) -> None:
    """Remove the exporter's per-node Python stack traces (they name files of the machine that
    exported); the weights in the external data file are left as they are."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        keep = [(p.key, p.value) for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        for key, value in keep:
            node.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def sklearn_models() -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s = datasets.digits()
    flat = {k: (x.reshape(len(x), -1), y) for k, (x, y) in s.items()}
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=500, random_state=0))
    clf.fit(flat["train"][0].astype(np.float32), flat["train"][1])
    print("digits_sklearn accuracy", clf.score(flat["test"][0].astype(np.float32), flat["test"][1]))
    for zipmap, name in ((False, "digits_sklearn"), (True, "digits_sklearn_zipmap")):
        onx = to_onnx(clf, flat["test"][0][:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3},
                      options={id(clf.steps[-1][1]): {"zipmap": zipmap}})
        (OUT / f"{name}.onnx").write_bytes(onx.SerializeToString())
        save_data(name, flat["calib"], flat["test"])
    d = load_diabetes()
    x, y = d.data.astype(np.float32), d.target.astype(np.float64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:342], order[342:]
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(32, 16), max_iter=3000, random_state=0))
    reg.fit(x[train], y[train])
    print("diabetes_sklearn_regressor R^2", reg.score(x[test], y[test]))
    onx = to_onnx(reg, x[:1], target_opset=17)
    (OUT / "diabetes_sklearn_regressor.onnx").write_bytes(onx.SerializeToString())
    save_data("diabetes_sklearn_regressor", (x[train[:200]], y[train[:200]]), (x[test], y[test]))


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    dynamo("digits_cnn", "cnn_small")
    dynamo("digits_resnet", "resnet_maxpool")
    sklearn_models()


if __name__ == "__main__":
    main()
