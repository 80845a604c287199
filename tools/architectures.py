"""Torch architectures of the shipped models (dev-only). Inputs are uint8 pixel values as float;
each network scales them to [0, 1] itself (``Scale``), so data files stay exact and small."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch import nn


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class QCFS(nn.Module):
    """Quantization clip-floor-shift activation (Bu et al. 2022), trained threshold, L levels:
    theta / L * floor(clamp(x / theta, 0, 1) * L + 1/2). Training passes the gradient through the
    floor (straight-through); in eval mode it is a plain floor, which exports as onnx2snn's clip-floor
    chain (onnx2snn/ops/clip_floor.py)."""

    def __init__(self, levels: int = 4, theta: float = 8.0):
        super().__init__()
        self.levels, self.theta = levels, nn.Parameter(torch.tensor([theta]))

    def forward(self, x):
        x = torch.clamp(x / self.theta, 0, 1) * self.levels + 0.5
        x = x + (torch.floor(x) - x).detach() if self.training else torch.floor(x)
        return x / self.levels * self.theta


def conv_bn_relu(cin: int, cout: int, act=nn.ReLU) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), act()]


def mlp(shape):
    c, h, w = shape
    return nn.Sequential(Scale(1 / 16), nn.Flatten(), nn.Linear(c * h * w, 128), nn.ReLU(),
                         nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def cnn_small(shape):
    """digits 8x8: 3 conv/BN/ReLU, 2 AvgPool, 1 linear."""
    return nn.Sequential(Scale(1 / 16), *conv_bn_relu(1, 16), *conv_bn_relu(16, 32), nn.AvgPool2d(2),
                         *conv_bn_relu(32, 64), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64 * 2 * 2, 10))


def cnn_deep(shape):
    """MNIST 28x28: 5 conv/BN/ReLU, 3 AvgPool, 2 linear."""
    return nn.Sequential(Scale(1 / 255), *conv_bn_relu(1, 16), *conv_bn_relu(16, 16), nn.AvgPool2d(2),
                         *conv_bn_relu(16, 32), *conv_bn_relu(32, 32), nn.AvgPool2d(2),
                         *conv_bn_relu(32, 64), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 3 * 3, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))


def vgg_fashion(shape):
    """Fashion-MNIST 28x28: VGG-like, 5 conv/BN/ReLU, 3 AvgPool, 2 linear."""
    return nn.Sequential(Scale(1 / 255), *conv_bn_relu(1, 32), *conv_bn_relu(32, 32), nn.AvgPool2d(2),
                         *conv_bn_relu(32, 64), *conv_bn_relu(64, 64), nn.AvgPool2d(2),
                         *conv_bn_relu(64, 128), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(128 * 3 * 3, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))


class ResidualBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); shortcut = 1x1 conv + BN if widths differ."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(cin, cout), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def resnet_maxpool(shape):
    """digits 8x8: stem, 2 residual blocks, 2 MaxPool, BN throughout, 1 linear."""
    return nn.Sequential(Scale(1 / 16), *conv_bn_relu(1, 16), ResidualBlock(16, 16), nn.MaxPool2d(2),
                         ResidualBlock(16, 32), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 2 * 2, 10))


def vgg_fashion_qcfs(shape):
    """vgg_fashion with QCFS activations (L = 4) instead of ReLU: a network trained for conversion."""
    return nn.Sequential(Scale(1 / 255), *conv_bn_relu(1, 32, QCFS), *conv_bn_relu(32, 32, QCFS), nn.AvgPool2d(2),
                         *conv_bn_relu(32, 64, QCFS), *conv_bn_relu(64, 64, QCFS), nn.AvgPool2d(2),
                         *conv_bn_relu(64, 128, QCFS), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(128 * 3 * 3, 256), QCFS(), nn.Dropout(0.3), nn.Linear(256, 10))


ARCHITECTURES = {"mlp": mlp, "cnn_small": cnn_small, "cnn_deep": cnn_deep, "vgg_fashion": vgg_fashion,
                 "vgg_fashion_qcfs": vgg_fashion_qcfs, "resnet_maxpool": resnet_maxpool}


def from_onnx(path: Path, arch: str, sample_shape) -> nn.Module:
    """The torch network ``arch`` with the weights of an ONNX file it was exported to (TorchScript
    exporter, no constant folding: initializer names are the state_dict keys)."""
    model = ARCHITECTURES[arch](sample_shape)
    graph = onnx.load(path).graph
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    for node in graph.node:  # the exporter writes equal tensors once and aliases them with Identity
        if node.op_type == "Identity" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    missing, _ = model.load_state_dict(weights, strict=False)
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    return model.eval()
