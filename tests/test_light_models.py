"""Graphs nobody here wrote: the model-zoo CNNs that ship inside the onnx wheel ("light" models:
Caffe2-era AlexNet, ZFNet-512, GoogLeNet, Inception v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19,
DenseNet-121; opset 9, fixed batch 1, weights made by ConstantOfShape). Each converts at T = 2 on two
samples, its SNN passes the full checker and runs in stock onnxruntime, the loop forms give the same
output, and the ANN path reproduces the packaged output on the input it was made from."""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx2snn
from onnx2snn import Config
from onnx2snn.graph import load
from onnx2snn.export import unroll
from onnx2snn.simulation.runtime import make_session

pytestmark = pytest.mark.slow  # VGG-19 alone takes ~30 s (a 548 MB model through every stage)

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
NAMES = ["bvlc_alexnet", "zfnet512", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
         "vgg19", "densenet121"]


def light_model(name: str) -> onnx.ModelProto:
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    if not os.path.isfile(path):
        pytest.skip(f"this onnx release ({onnx.__version__}) does not ship {path}")
    return load.load_model(path)


def packaged_input(model: onnx.ModelProto) -> tuple[str, np.ndarray]:
    """The input onnx's backend test feeds these models (and made their _output_0.pb with):
    arange(n) / n in the input's shape."""
    inits = {t.name for t in model.graph.initializer}
    (value,) = [i for i in model.graph.input if i.name not in inits]
    shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return value.name, (np.arange(n).reshape(shape) / n).astype(np.float32)


def photo_like(x: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` inputs shaped like ``x`` (a smooth random image in [-1, 1])."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, size=(count, x.shape[1], 8, 8)).astype(np.float32)
    reps = (1, 1, -(-x.shape[2] // 8), -(-x.shape[3] // 8))
    return np.tile(coarse, reps)[:, :, :x.shape[2], :x.shape[3]]


@pytest.mark.parametrize("name", NAMES)
def test_light_model_converts_and_runs_in_every_form(name):
    model = light_model(name)
    input_name, x = packaged_input(model)
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT, f"light_{name}_output_0.pb")))
    result = onnx2snn.convert(model, {input_name: photo_like(x, 2)}, Config(T=2))
    ann = make_session(result.light_ann, Config())  # the normalised ANN, its weights held once
    np.testing.assert_allclose(ann.run(None, {input_name: x})[0].reshape(expected.shape), expected,
                               rtol=1e-3, atol=1e-6)
    snn = result.snn
    onnx.checker.check_model(snn, full_check=True)
    feed = {input_name: x}
    stock = ort.InferenceSession(snn.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.isfinite(stock).all()
    for form in ("steps", "scan"):
        lowered = unroll(result.light_snn, form)
        out = onnx2snn.simulate(lowered, x, Config())[snn.graph.output[0].name]
        np.testing.assert_array_equal(out, stock, err_msg=form)
