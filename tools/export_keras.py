"""A Keras model on the digits, exported with tf2onnx, for the exporter tests.

    python -m venv tf && . tf/bin/activate
    pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 scikit-learn    # CPU build, about 600 MB
    python tools/export_keras.py

Writes models/exporters/digits_keras.onnx (+ .calib.npz / .test.npz, x in Keras' NHWC layout
[N, 8, 8, 1]). tf2onnx turns NHWC into NCHW with Reshape/Transpose, computes the flatten shape
with Shape/Gather/Concat at run time, and writes Dense layers as MatMul (+ Add).
"""

from __future__ import annotations

import argparse

import numpy as np

from common import ROOT

import datasets


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    import tensorflow as tf
    import tf2onnx

    tf.keras.utils.set_random_seed(0)
    s = {k: (np.moveaxis(x, 1, -1), y) for k, (x, y) in datasets.digits().items()}  # NCHW -> NHWC
    inp = tf.keras.Input((8, 8, 1), name="pixels")
    h = tf.keras.layers.Rescaling(1 / 16)(inp)
    h = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = tf.keras.layers.MaxPooling2D()(h)
    h = tf.keras.layers.Flatten()(h)
    h = tf.keras.layers.Dense(64, activation="relu")(h)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(10)(h))
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = s["train"]
    model.fit(x.astype(np.float32), y, epochs=40, batch_size=64, verbose=0)
    print("keras test accuracy", model.evaluate(s["test"][0].astype(np.float32), s["test"][1], verbose=0)[1])
    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32, name="pixels"),)
    onx, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    out = ROOT / "models" / "exporters"
    out.mkdir(parents=True, exist_ok=True)
    (out / "digits_keras.onnx").write_bytes(onx.SerializeToString())
    for split in ("calib", "test"):
        np.savez_compressed(out / f"digits_keras.{split}.npz", x=s[split][0], y=s[split][1])


if __name__ == "__main__":
    main()
