"""Operation counts: MACs of one-node graphs by hand, SOPs from measured firing rates."""

import numpy as np
import pytest

import onnx2snn
from conftest import MODELS
from graphs import inputs, mlp
from onnx2snn import energy
from onnx2snn.graph import load, plan as plan_mod


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


def test_shufflenet_unit_converts_and_reports_its_energy(tmp_path, capsys):
    """Channel shuffle, Split, a depthwise conv and a Concat of branches between spiking layers:
    the conversion, its energy estimate and every output (exit 0)."""
    import json

    import onnx
    from onnx2snn.cli import main
    from graphs import shufflenet_like

    onnx.save(shufflenet_like(), tmp_path / "shuffle.onnx")
    x = inputs((8, 8, 8), n=48)
    np.savez(tmp_path / "shuffle.calib.npz", x=x)
    assert main([str(tmp_path / "shuffle.onnx"), "-T", "8", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    e = report["energy"]
    assert report["warnings"] == [] and e["ann_macs"] > 0 and e["snn_sops"] > 0
    assert set(e["sops_by_layer"]) == {layer["name"] for layer in report["layers"]}
    assert (tmp_path / "shuffle.snn.onnx").is_file()


def test_split_fanout_weighs_each_branch_by_its_share():
    """A Split sends a unit to one of its outputs: fan-out = sum of size share x branch fan-out."""
    from graphs import shufflenet_like

    model = load.normalize(shufflenet_like())
    plan = plan_mod.make_plan(model)
    first = plan.layers[0]
    walk = energy._Fanout(*_walk_parts(model))
    macs = {n.name: energy._macs(n, energy._shapes(model)) for n in model.graph.node if n.op_type == "Conv"}
    second_conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[0] != "x"
                       and n.input[0] != first.output)
    right = second_conv.input[0]  # the Split's second output feeds the 1x1 conv of the right branch
    shapes = energy._shapes(model)
    expected_right = macs[second_conv.name] / float(np.prod(shapes[right]))
    assert walk(right) == pytest.approx(expected_right)
    left = next(o for n in model.graph.node if n.op_type == "Split" for o in n.output if o != right)
    assert walk(first.output) == pytest.approx(0.5 * walk(left) + 0.5 * walk(right))


def _walk_parts(model):
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    shapes = energy._shapes(model)
    from onnx2snn.ops import Role
    macs = {n.name: energy._macs(n, shapes) for n in model.graph.node if energy._role(n) is Role.WEIGHTED}
    return consumers, shapes, macs


def test_a_report_part_that_fails_is_a_warning_and_every_output_is_written(tmp_path, capsys, monkeypatch):
    """An internal error in the energy estimate: exit 0, the SNN, the JSON (with the warning), the
    HTML report and the NIR file are all written."""
    import json
    import shutil

    from onnx2snn.cli import main

    pytest.importorskip("matplotlib")
    pytest.importorskip("nir")
    for suffix in (".onnx", ".calib.npz", ".test.npz"):
        shutil.copy(MODELS / f"digits_mlp{suffix}", tmp_path / f"m{suffix}")

    def broken(*args):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(energy, "estimate", broken)
    code = main([str(tmp_path / "m.onnx"), "-T", "4", "--json", "-q", "--nir", str(tmp_path / "m.nir"),
                 "--report", str(tmp_path / "report"), "--sweep", "2"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert report["energy"] is None and any("energy estimate unavailable" in w for w in report["warnings"])
    assert (tmp_path / "m.snn.onnx").is_file() and (tmp_path / "m.nir").is_file()
    assert (tmp_path / "report" / "index.html").is_file() and "energy estimate unavailable" in \
        (tmp_path / "report" / "index.html").read_text()
