"""Operation counts: MACs of one-node graphs by hand, SOPs from measured firing rates."""

import numpy as np
import pytest

import onnx2snn
from conftest import MODELS
from graphs import inputs, mlp
from onnx2snn import energy, load, plan as plan_mod


def test_dense_macs_and_sops_by_hand():
    model = load.normalize(mlp(widths=(8, 16, 16, 4)))
    plan = plan_mod.make_plan(model)
    rates = {layer.name: 0.25 for layer in plan.layers}
    e = energy.estimate(model, plan, rates, T=4)
    assert e.ann_macs == 8 * 16 + 16 * 16 + 16 * 4
    assert e.snn_macs == 8 * 16  # the first layer sees the constant analog input
    # spikes per sample = 0.25 * 16 neurons * 4 steps = 16 per layer; fan-out 16 then 4
    assert e.snn_sops == pytest.approx(16 * 16 + 16 * 4)
    assert e.ann_uj == pytest.approx(e.ann_macs * 4.6e-6)
    assert e.snn_uj == pytest.approx(e.snn_macs * 4.6e-6 + e.snn_sops * 0.9e-6)


def test_conv_model_counts_are_consistent():
    base = MODELS / "digits_cnn"
    r = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", onnx2snn.Config(T=4), data=f"{base}.test.npz")
    e = energy.estimate(r.ann, r.plan, r.evaluation.firing_rates, 4)
    assert e.ann_macs == 64 * 16 * 9 + 64 * 32 * 16 * 9 + 16 * 64 * 32 * 9 + 256 * 10
    assert 0 < e.snn_sops and set(e.sops_by_layer) == {layer.name for layer in r.plan.layers}
    silent = energy.estimate(r.ann, r.plan, {}, 4)
    assert silent.snn_sops == 0
    assert np.isfinite(e.snn_uj)


def test_cli_json_reports_energy():
    r = onnx2snn.convert(mlp(), {"x": inputs((8,), n=16)}, onnx2snn.Config(T=2), data={"x": inputs((8,), n=16)})
    from onnx2snn.report import summary
    s = summary(r, "m", None)
    assert s["energy"]["ann_macs"] > 0 and s["energy"]["pj_per_mac"] == 4.6
