"""One small graph per supported op family: a spiking layer before the op under test and one
after it, so the op acts on spike trains (its time-batched form) and its output feeds an IF layer."""

from __future__ import annotations

import numpy as np

from graphs import GraphBuilder


def _finish(g: GraphBuilder, h: str, features: int, shape):
    h = g.relu(h)
    if g.rank_of_last > 2:
        h = g.op("Flatten", [h], axis=1)
    g.gemm(h, features, 3)
    g.nodes[-1].output[0] = "y"
    return g.model({"x": ["N", *shape]}, {"y": ["N", 3]})


def conv_net(middle, out_features, channels=4, shape=(2, 6, 6), opset=17):
    g = GraphBuilder(seed=7, opset=opset)
    g.rank_of_last = 4
    h = g.relu(g.conv("x", shape[0], channels))
    return _finish(g, middle(g, h), out_features, shape)


def dense_net(middle, out_features, width=12, opset=17):
    g = GraphBuilder(seed=7, opset=opset)
    g.rank_of_last = 2
    h = g.relu(g.gemm("x", 6, width))
    return _finish(g, middle(g, h), out_features, (6,))


def _bn(g, h, c):
    rng = np.random.default_rng(3)
    params = [rng.uniform(0.5, 2, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c), rng.uniform(0.5, 2, c)]
    return g.op("BatchNormalization", [h] + [g.const(p.astype(np.float32)) for p in params])


def _conv1d_net():
    g = GraphBuilder(seed=7)
    g.rank_of_last = 3
    w = (g.rng.normal(size=(4, 2, 3)) * 0.6).astype(np.float32)
    h = g.relu(g.op("Conv", ["x", g.const(w)], pads=[1, 1]))
    w2 = (g.rng.normal(size=(4, 4, 3)) * 0.4).astype(np.float32)
    h = g.op("Conv", [h, g.const(w2), g.const(np.zeros(4, np.float32))], pads=[1, 1])
    return _finish(g, h, 4 * 8, (2, 8))


def _matmul(g, h):
    w = (g.rng.normal(size=(12, 8)) * 0.4).astype(np.float32)
    return g.op("Add", [g.op("MatMul", [h, g.const(w)]), g.const(np.full(8, 0.1, np.float32))])


def _residual(g, h):
    return g.op("Add", [g.conv(h, 4, 4), h])


def _reshapes(g, h):
    """[N,4,6,6] -> Reshape [N,4,36] -> Unsqueeze axis 2 -> Squeeze axis 2 -> Reshape [N,4,6,6]."""
    i64 = lambda v: g.const(np.array(v, np.int64))  # noqa: E731
    h = g.op("Reshape", [g.conv(h, 4, 4), i64([0, 4, 36])])
    h = g.op("Squeeze", [g.op("Unsqueeze", [h, i64([2])]), i64([2])])
    return g.op("Reshape", [h, i64([0, 4, 6, 6])])


def _shape_flatten(g, h):
    """torch's x.view(x.size(0), -1): the row count is read from the tensor at run time."""
    i64 = lambda v: g.const(np.array(v, np.int64))  # noqa: E731
    rows = g.op("Unsqueeze", [g.op("Gather", [g.op("Shape", [h]), i64(0)], axis=0), i64([0])])
    return g.op("Reshape", [h, g.op("Concat", [rows, i64([-1])], axis=0)])


def _flatten_between_spiking_layers():
    g = GraphBuilder(seed=7)
    g.rank_of_last = 2
    h = g.relu(g.conv("x", 2, 4))
    h = g.gemm(_shape_flatten(g, g.relu(g.conv(h, 4, 4))), 144, 12)
    return _finish(g, h, 12, (2, 6, 6))


def _flatten_in_readout():
    g = GraphBuilder(seed=7)
    h = g.relu(g.conv(g.relu(g.conv("x", 2, 4)), 4, 4))
    g.gemm(_shape_flatten(g, h), 144, 3)
    g.nodes[-1].output[0] = "y"
    return g.model({"x": ["N", 2, 6, 6]}, {"y": ["N", 3]})


def _unfoldable_bn(g, h):
    return _bn(g, g.op("Add", [g.conv(h, 4, 4), h]), 4)


FAMILIES = {
    "relu": lambda: dense_net(lambda g, h: g.gemm(h, 12, 8), 8),
    "clip_relu6": lambda: dense_net(lambda g, h: g.op("Clip", [g.gemm(h, 12, 8), g.const(np.float32(0)),
                                                               g.const(np.float32(6))]), 8),
    "max_x_0": lambda: dense_net(lambda g, h: g.op("Max", [g.gemm(h, 12, 8), g.const(np.float32(0))]), 8),
    "leakyrelu_alpha0": lambda: dense_net(lambda g, h: g.op("LeakyRelu", [g.gemm(h, 12, 8)], alpha=0.0), 8),
    "conv2d": lambda: conv_net(lambda g, h: g.conv(h, 4, 4), 4 * 36),
    "conv2d_strided": lambda: conv_net(lambda g, h: g.op("Conv", [h, g.const(
        (g.rng.normal(size=(4, 4, 3, 3)) * 0.3).astype(np.float32))], strides=[2, 2], pads=[1, 1, 1, 1]), 4 * 9),
    "conv2d_grouped": lambda: conv_net(lambda g, h: g.conv(h, 4, 4, group=2), 4 * 36),
    "conv2d_depthwise": lambda: conv_net(lambda g, h: g.conv(h, 4, 4, group=4), 4 * 36),
    "conv1d": _conv1d_net,
    "gemm_transposed": lambda: dense_net(lambda g, h: g.gemm(h, 12, 8), 8),
    "gemm_not_transposed": lambda: dense_net(lambda g, h: g.op("Gemm", [h, g.const(
        (g.rng.normal(size=(12, 8)) * 0.4).astype(np.float32)), g.const(np.zeros(8, np.float32))]), 8),
    "matmul_add": lambda: dense_net(_matmul, 8),
    "batchnorm_after_conv": lambda: conv_net(lambda g, h: _bn(g, g.conv(h, 4, 4), 4), 4 * 36),
    "batchnorm_after_gemm": lambda: dense_net(lambda g, h: _bn(g, g.gemm(h, 12, 8), 8), 8),
    "batchnorm_unfoldable": lambda: conv_net(_unfoldable_bn, 4 * 36),
    "add_residual": lambda: conv_net(_residual, 4 * 36),
    "concat": lambda: conv_net(lambda g, h: g.op("Concat", [g.conv(h, 4, 2), h], axis=1), 6 * 36),
    "mul_div_constant": lambda: conv_net(lambda g, h: g.op("Div", [g.op("Mul", [g.conv(h, 4, 4), g.const(
        np.float32(3.0))]), g.const(np.float32(2.0))]), 4 * 36),
    "pad": lambda: conv_net(lambda g, h: g.conv(g.op("Pad", [h, g.const(np.array(
        [0, 0, 1, 1, 0, 0, 1, 1], np.int64))]), 4, 4, pad=0), 4 * 36),
    "transpose": lambda: conv_net(lambda g, h: g.conv(g.op("Transpose", [h], perm=[0, 1, 3, 2]), 4, 4), 4 * 36),
    "reshape_squeeze_unsqueeze": lambda: conv_net(_reshapes, 4 * 36),
    "shape_flatten_spiking": _flatten_between_spiking_layers,
    "shape_flatten_readout": _flatten_in_readout,
    "averagepool": lambda: conv_net(lambda g, h: g.op("AveragePool", [g.conv(h, 4, 4)], kernel_shape=[2, 2],
                                                      strides=[2, 2]), 4 * 9),
    "globalaveragepool": lambda: conv_net(lambda g, h: g.op("GlobalAveragePool", [g.conv(h, 4, 4)]), 4),
    "maxpool": lambda: conv_net(lambda g, h: g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2]), 4 * 9),
    "globalmaxpool": lambda: conv_net(lambda g, h: g.op("GlobalMaxPool", [h]), 4),
    "dropout_identity": lambda: dense_net(lambda g, h: g.op("Identity", [g.op("Dropout", [g.gemm(h, 12, 8)])]), 8),
}


def input_shape(model) -> tuple[int, ...]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims[1:])

