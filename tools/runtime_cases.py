"""The cases the runtime benchmarks time (tools/bench_runtime.py, its memory children in
tools/bench_memory.py, tools/bench_bound.py): the models, their conversions and one zero-argument
runner per column. torch only for ``vgg32`` and the shipped models' torch twins; SpikingJelly when
installed.
"""

from __future__ import annotations

from pathlib import Path

import common
import numpy as np

import onnx2snn
from onnx2snn.export import unroll
from onnx2snn.simulation.runtime import make_session
from onnx2snn.simulation.stepwise import StepwiseSNN

SHIPPED = ("digits_cnn", "mnist_cnn", "fashion_cnn", "digits_resnet", "digits_mlp")


def vgg32():
    """VGG-like for 3x32x32: 6 conv/BN/ReLU, 3 AvgPool, 2 linear (He init, random BN statistics)."""
    import torch
    from torch import nn

    from architectures import conv_bn_relu

    torch.manual_seed(0)
    net = nn.Sequential(*conv_bn_relu(3, 32), *conv_bn_relu(32, 32), nn.AvgPool2d(2),
                        *conv_bn_relu(32, 64), *conv_bn_relu(64, 64), nn.AvgPool2d(2),
                        *conv_bn_relu(64, 128), *conv_bn_relu(128, 128), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 10))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def build(name: str, folder: Path):
    """(onnx path, calibration arrays, torch model) for a model name."""
    import torch

    if name == "vgg32":
        net, rng = vgg32(), np.random.default_rng(0)
        calib = {"x": rng.uniform(0, 1, (256, 3, 32, 32)).astype(np.float32)}
        path = folder / "vgg32.onnx"
        torch.onnx.export(net, torch.from_numpy(calib["x"][:2]), str(path), input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                          dynamo=False, opset_version=17)
        return path, calib, net
    from architectures import from_onnx
    from train_models import SPECS

    path = common.MODELS / f"{name}.onnx"
    calib = dict(np.load(path.with_suffix(".calib.npz")))
    return path, calib, from_onnx(path, SPECS[name][1], tuple(calib["x"].shape[1:]))


def convert(path: Path, calib: dict, T: int, threads: int):
    """(ANN, plan, phase-1 params, SNN, config) at T."""
    config = onnx2snn.Config(T=T, phase=1, threads=threads)
    r = onnx2snn.convert(path, calib, config)
    return r.ann, r.plan, r.params, r.snn, config


def spikingjelly_net(net, calib: dict):
    """SpikingJelly's conversion of the torch net, or None when it is not installed."""
    try:
        import torch
        from spikingjelly.activation_based import ann2snn
    except ImportError:
        return None
    import copy

    x = torch.from_numpy(calib["x"].astype(np.float32))
    loader = [(x[i:i + 64], torch.zeros(len(x[i:i + 64]))) for i in range(0, len(x), 64)]
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="max")
    return ann2snn.FXConverter(recipe=recipe, device="cpu").convert(copy.deepcopy(net)).eval()


def sj_runner(snn, x: np.ndarray, T: int):
    import torch
    from spikingjelly.activation_based import functional

    xt = torch.from_numpy(x)

    def go():
        with torch.no_grad():
            functional.reset_net(snn)
            out = snn(xt)
            for _ in range(T - 1):
                out = out + snn(xt)
        return out / T
    return go


def runners(name: str, built, T: int, B: int, threads: int, sj_net):
    """{column: zero-argument callable} for one (model, T, B)."""
    path, calib, _ = built
    ann, plan, params, snn, config = convert(path, calib, T, threads)
    rng = np.random.default_rng(1)
    x = calib["x"][rng.integers(0, len(calib["x"]), B)].astype(np.float32)
    xin = ann.graph.input[0].name
    ann_s, snn_s = make_session(ann, config), make_session(snn, config)
    steps_s, scan_s = (make_session(unroll(snn, form), config) for form in ("steps", "scan"))
    stock_s = stock_session(snn, threads)
    x_tb = np.concatenate([x] * T)
    step = StepwiseSNN(ann, plan, params, config)
    out = {"ours": lambda: snn_s.run(None, {xin: x}),
           "stock": lambda: stock_s.run(None, {xin: x}),
           "steps": lambda: steps_s.run(None, {xin: x}),
           "scan": lambda: scan_s.run(None, {xin: x}),
           "ann_B": lambda: ann_s.run(None, {xin: x}),
           "ann_TB": lambda: ann_s.run(None, {xin: x_tb}),
           "stepwise": lambda: step.run({xin: x}, T)}
    if sj_net is not None:
        out["sj"] = sj_runner(sj_net, x, T)
    return out


def stock_session(model, threads: int, profile: str | None = None):
    """A plain onnxruntime session for ``model`` as written (no onnx2snn lowering), optionally
    writing onnxruntime's profile to files starting with ``profile``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if profile:
        options.enable_profiling, options.profile_file_prefix = True, profile
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
