"""Target profiles (onnx2snn.targets) and their checks (onnx2snn.snn.constraints): each profile's
conversions comply, and each constraint catches a model that breaks it."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx2snn
from conftest import MODELS
from onnx2snn.graph import weights
from onnx2snn.snn import constraints
from onnx2snn.targets import TARGETS


def _with_initializer(model: onnx.ModelProto, name: str, change) -> onnx.ModelProto:
    """A copy of ``model`` with initializer ``name`` replaced by ``change(array)``."""
    out = weights.copy_model(model)
    init = next(i for i in out.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(change(weights.to_array(init)).astype(np.float32), name))
    return out


def _neuron(model, index=0):
    return [n for n in model.graph.node if n.op_type == "IFNeuron"][index]


def test_unknown_target_and_int8_conflicts_are_config_errors():
    with pytest.raises(onnx2snn.ConfigError, match="not one of"):
        onnx2snn.Config(target="loihi")
    with pytest.raises(onnx2snn.ConfigError, match="fit-weights"):
        onnx2snn.Config(target="int8", fit_weights=True)
    with pytest.raises(onnx2snn.ConfigError, match="phase 2"):
        onnx2snn.Config(target="int8", phase=1)


@pytest.mark.parametrize("target", list(TARGETS))
def test_conversions_comply_with_their_target(converted, target):
    snn = converted("digits_cnn", 4, data=False, target=target).snn
    assert constraints.violations(snn, TARGETS[target]) == []
    meta = {p.key: p.value for p in snn.metadata_props}
    assert meta["onnx2snn.target"] == target
    resets = {a.s.decode() for n in snn.graph.node if n.op_type == "IFNeuron" for a in n.attribute
              if a.name == "reset"}
    assert resets == ({"zero"} if TARGETS[target].reset == "zero" else set())


def test_nir_portable_catches_an_initial_potential(converted):
    snn = converted("digits_cnn", 4, data=False, target="nir-portable").snn
    bad = _with_initializer(snn, _neuron(snn).input[2], lambda v: v + 0.25)
    found = constraints.violations(bad, TARGETS["nir-portable"])
    assert len(found) == 1 and "v(0) is not 0" in found[0]


def test_nir_portable_catches_thresholds_varying_within_a_channel(converted):
    snn = converted("digits_cnn", 4, data=False, target="nir-portable").snn
    bad = _with_initializer(snn, _neuron(snn).input[1], lambda t: t * np.linspace(1, 2, 64).reshape(1, 8, 8))
    assert any("vary within a channel" in v for v in constraints.violations(bad, TARGETS["nir-portable"]))


@pytest.mark.parametrize("part,change", [
    ("threshold", lambda t: t * 1.0037), ("v(0)", lambda v: v + 1e-3 * np.abs(v).max() + 1e-4)])
def test_int8_catches_a_threshold_or_potential_off_the_grid(converted, part, change):
    snn = converted("digits_cnn", 4, data=False, target="int8").snn
    neuron = _neuron(snn, 1)
    bad = _with_initializer(snn, neuron.input[1 if part == "threshold" else 2], change)
    found = constraints.violations(bad, TARGETS["int8"])  # a threshold is also the next layer's input unit
    assert found and found[0] == f"{neuron.name}: {part} is not an integer multiple of the layer's weight scale"


def test_int8_catches_a_weight_off_the_grid(converted):
    snn = converted("digits_cnn", 4, data=False, target="int8").snn
    conv = next(n for n in snn.graph.node if n.op_type == "Conv" and n.name == "/4/Conv")

    def nudge(w):  # a third of a step on channel 0's smallest weight: off the grid, its scale unchanged
        w = w.copy()
        w[0].flat[np.argmin(np.abs(w[0]))] += 0.3 * np.abs(w[0]).max() / 127
        return w
    found = constraints.violations(_with_initializer(snn, conv.input[1], nudge), TARGETS["int8"])
    assert found == ["/4/Conv: weights are not int8 multiples of one scale per output channel"]


@pytest.mark.parametrize("target", ["nir-portable", "int8"])
def test_max_pooling_is_refused_up_front_by_name(target):
    with pytest.raises(onnx2snn.UnsupportedModelError) as err:
        onnx2snn.prepare(MODELS / "digits_resnet.onnx", MODELS / "digits_resnet.calib.npz",
                         onnx2snn.Config(T=4, target=target))
    names = [p[0] for p in err.value.problems]  # int8 also names the residual sums
    assert names == ["/5/MaxPool", "/7/MaxPool"] + (["/4/relu/Relu", "/6/relu/Relu"] if target == "int8" else [])


def test_onnx_target_is_unconstrained(converted):
    snn = converted("digits_resnet", 4, data=False).snn
    assert constraints.violations(snn, TARGETS["onnx"]) == []
    assert constraints.violations(snn, TARGETS["nir-portable"])  # v(0) and max-pools


def test_speck_catches_two_thresholds_in_a_layer_and_a_bias_out_of_range(converted):
    snn = converted("digits_cnn", 4, data=False, target="speck").snn
    neuron = _neuron(snn, 1)

    def double_first_channel(t):
        t = np.broadcast_to(t, (32, 1, 1)).copy()
        t[0] *= 2  # still on the grid, but a second threshold
        return t
    found = constraints.violations(_with_initializer(snn, neuron.input[1], double_first_channel), TARGETS["speck"])
    assert f"{neuron.name}: more than one threshold in the layer; target 'speck' has one" in found
    bias = next(n for n in snn.graph.node if n.name == f"{neuron.name}/bias")
    theta = weights.to_array(next(i for i in snn.graph.initializer if i.name == neuron.input[1]))
    found = constraints.violations(  # 1000 thresholds: on the grid, far beyond 127 steps
        _with_initializer(snn, bias.input[1], lambda b: np.broadcast_to(1000 * theta, b.shape)), TARGETS["speck"])
    assert found == [f"{neuron.name}: bias exceeds 127 steps of the layer's weight scale"]


def test_int8_refuses_layers_without_a_conv_or_gemm_of_their_own_up_front():
    """skl2onnx's MLP computes each layer as MatMul + Add: both layers named before any work."""
    base = MODELS / "exporters" / "digits_sklearn"
    with pytest.raises(onnx2snn.UnsupportedModelError) as err:
        onnx2snn.prepare(f"{base}.onnx", f"{base}.calib.npz", onnx2snn.Config(T=4, target="int8"))
    assert [p[0] for p in err.value.problems] == ["Relu", "Relu1"]
    assert "MatMul + Add" in err.value.problems[0][2]
