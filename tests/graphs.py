"""Small ONNX graphs for tests, built with onnx.helper (no framework)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

RNG_SEED = 0


class GraphBuilder:
    """Append nodes with fresh names; weights become initializers."""

    def __init__(self, seed: int = RNG_SEED, opset: int = 17):
        self.nodes, self.inits, self.rng, self.opset, self.count = [], [], np.random.default_rng(seed), opset, 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value, prefix="c") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        name = self.name(op_type.lower())
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs if n_out > 1 else outs[0]

    def gemm(self, x: str, fan_in: int, fan_out: int, scale: float | None = None) -> str:
        scale = scale or 1.0 / np.sqrt(fan_in)
        w = (self.rng.normal(size=(fan_out, fan_in)) * scale * 1.5).astype(np.float32)
        b = (self.rng.normal(size=fan_out) * 0.1).astype(np.float32)
        return self.op("Gemm", [x, self.const(w, "w"), self.const(b, "b")], transB=1)

    def conv(self, x: str, cin: int, cout: int, k: int = 3, group: int = 1, pad: int = 1) -> str:
        w = (self.rng.normal(size=(cout, cin // group, k, k)) * 1.5 / np.sqrt(cin // group * k * k)).astype(np.float32)
        b = (self.rng.normal(size=cout) * 0.1).astype(np.float32)
        return self.op("Conv", [x, self.const(w, "w"), self.const(b, "b")], pads=[pad] * 4, group=group)

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def model(self, inputs: dict[str, list], outputs: dict[str, list]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "test",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def mlp(widths=(8, 16, 16, 4), seed: int = RNG_SEED) -> onnx.ModelProto:
    """x [N, w0] -> (Gemm, Relu) * k -> Gemm -> y [N, w_last]."""
    g = GraphBuilder(seed)
    x = "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        x = g.gemm(x, a, b)
        if i < len(widths) - 2:
            x = g.relu(x)
    g.nodes[-1].output[0] = "y"
    return g.model({"x": ["N", widths[0]]}, {"y": ["N", widths[-1]]})


def cnn(seed: int = RNG_SEED, opset: int = 17) -> onnx.ModelProto:
    """x [N, 2, 6, 6] -> conv/relu -> conv/relu -> avgpool -> flatten -> gemm -> y [N, 3]."""
    g = GraphBuilder(seed, opset)
    h = g.relu(g.conv("x", 2, 4))
    h = g.relu(g.conv(h, 4, 4))
    h = g.op("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.op("Flatten", [h], axis=1)
    g.gemm(h, 4 * 3 * 3, 3)
    g.nodes[-1].output[0] = "y"
    return g.model({"x": ["N", 2, 6, 6]}, {"y": ["N", 3]})


def run_ort(model: onnx.ModelProto, feeds: dict, optimize: bool = True) -> list[np.ndarray]:
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def inputs(shape, n: int = 64, seed: int = 1, positive: bool = False) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)
    return np.abs(x) if positive else x


def wide_cnn(channels: int = 32, size: int = 32, seed: int = RNG_SEED) -> onnx.ModelProto:
    """A wide net for memory tests: x [N, 1, size, size] -> conv/relu x 2 -> maxpool -> conv/relu
    -> global avgpool -> flatten -> gemm -> y [N, 10]; every hidden map has ``channels`` channels."""
    g = GraphBuilder(seed)
    h = g.relu(g.conv("x", 1, channels))
    h = g.relu(g.conv(h, channels, channels))
    h = g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.relu(g.conv(h, channels, channels))
    h = g.op("Flatten", [g.op("GlobalAveragePool", [h])], axis=1)
    g.gemm(h, channels, 10)
    g.nodes[-1].output[0] = "y"
    return g.model({"x": ["N", 1, size, size]}, {"y": ["N", 10]})


def shufflenet_like(seed: int = RNG_SEED) -> onnx.ModelProto:
    """ShuffleNet's unit: x [N, 8, 8, 8] -> conv/relu (16) -> Split into two halves; one half as is,
    the other 1x1 conv/relu, depthwise 3x3 conv, 1x1 conv/relu -> Concat -> channel shuffle
    (Reshape [N, 2, 8, 8, 8], Transpose, Reshape back) -> 1x1 conv/relu -> global avgpool -> gemm."""
    g = GraphBuilder(seed)
    h = g.relu(g.conv("x", 8, 16))
    left, right = g.op("Split", [h, g.const(np.array([8, 8], np.int64), "split")], n_out=2, axis=1)
    r = g.relu(g.conv(right, 8, 8, k=1, pad=0))
    r = g.conv(r, 8, 8, k=3, group=8)  # depthwise
    r = g.relu(g.conv(r, 8, 8, k=1, pad=0))
    h = g.op("Concat", [left, r], axis=1)
    h = g.op("Reshape", [h, g.const(np.array([0, 2, 8, 8, 8], np.int64), "shape")])
    h = g.op("Transpose", [h], perm=[0, 2, 1, 3, 4])
    h = g.op("Reshape", [h, g.const(np.array([0, 16, 8, 8], np.int64), "shape")])
    h = g.relu(g.conv(h, 16, 16, k=1, pad=0))
    h = g.op("Flatten", [g.op("GlobalAveragePool", [h])], axis=1)
    g.gemm(h, 16, 5)
    g.nodes[-1].output[0] = "y"
    return g.model({"x": ["N", 8, 8, 8]}, {"y": ["N", 5]})


def lrn_cnn(seed: int = RNG_SEED) -> onnx.ModelProto:
    """AlexNet's pattern: x [N, 2, 8, 8] -> conv/relu -> LRN -> conv/relu -> maxpool -> conv/relu
    -> global avgpool -> gemm -> y [N, 4]; the LRN sits between spiking layers."""
    g = GraphBuilder(seed)
    h = g.relu(g.conv("x", 2, 8))
    h = g.op("LRN", [h], size=3, alpha=1e-2, beta=0.75, bias=1.0)
    h = g.relu(g.conv(h, 8, 8))
    h = g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.relu(g.conv(h, 8, 8))
    h = g.op("Flatten", [g.op("GlobalAveragePool", [h])], axis=1)
    g.gemm(h, 8, 4)
    g.nodes[-1].output[0] = "y"
    return g.model({"x": ["N", 2, 8, 8]}, {"y": ["N", 4]})
