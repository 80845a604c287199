"""One small graph per supported op family, converted and simulated at large T: the SNN output
matches the ANN's within 2 % of the output range (O(1/T) convergence), and the file is valid."""

import numpy as np
import onnx
import pytest

from graphs import inputs, run_ort
from op_graphs import FAMILIES, input_shape
import onnx2snn
from onnx2snn import Config

TOLERANCE = 0.02  # max |SNN - ANN| / max |ANN| at T = 256 with max-norm thresholds


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_converges_to_the_ann(family):
    model = FAMILIES[family]()
    x = inputs(input_shape(model), n=64, seed=2)
    result = onnx2snn.convert(model, {"x": x}, Config(T=256, percentile=100, phase=1))
    onnx.checker.check_model(result.snn, full_check=True)
    ann = run_ort(model, {"x": x})[0]
    snn = run_ort(result.snn, {"x": x})[0]
    assert np.abs(snn - ann).max() <= TOLERANCE * np.abs(ann).max(), family
    assert len(result.plan.layers) >= 2


@pytest.mark.parametrize("opset", [11, 13, 18, 21])
def test_opsets(opset):
    from op_graphs import conv_net
    model = conv_net(lambda g, h: g.op("AveragePool", [g.conv(h, 4, 4)], kernel_shape=[2, 2], strides=[2, 2]),
                     4 * 9, opset=opset)
    x = inputs(input_shape(model), n=32, seed=3)
    result = onnx2snn.convert(model, {"x": x}, Config(T=256, percentile=100, phase=1))
    ann, snn = run_ort(model, {"x": x})[0], run_ort(result.snn, {"x": x})[0]
    assert np.abs(snn - ann).max() <= TOLERANCE * np.abs(ann).max()
