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


def test_conv_model_counts_are_consistent(converted):
    r = converted("digits_cnn", 4)
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
    from onnx2snn.ops import Role, role_of
    macs = {n.name: energy._macs(n, shapes) for n in model.graph.node if role_of(n) is Role.WEIGHTED}
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


def _residual_then(kind: str):
    """x -> Gemm1 -> Relu (a) -> Gemm2 (b); Add(a, b) -> activation ``kind`` -> Gemm3 -> y."""
    from onnx import TensorProto, helper

    from onnx2snn.ops import clip_floor

    rng = np.random.default_rng(0)
    w = lambda name, n, m: helper.make_tensor(name, TensorProto.FLOAT, [n, m], rng.normal(size=n * m))  # noqa: E731
    scalar = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, [], [v])  # noqa: E731
    acts = {
        "Relu": ([helper.make_node("Relu", ["c"], ["d"], name="act")], []),
        "Clip": ([helper.make_node("Clip", ["c", "zero", "six"], ["d"], name="act")], []),
        "Max": ([helper.make_node("Max", ["c", "zero"], ["d"], name="act")], []),
        "LeakyRelu": ([helper.make_node("LeakyRelu", ["c"], ["d"], name="act", alpha=0.0)], []),
        "ClipFloor": ([helper.make_node(clip_floor.OP_TYPE, ["c", "six", "six", "zero"], ["d"], name="act",
                                        domain=clip_floor.DOMAIN)],
                      [helper.make_tensor_value_info("d", TensorProto.FLOAT, ["N", 6])]),
    }
    nodes, info = acts[kind]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["h"], name="g1"), helper.make_node("Relu", ["h"], ["a"], name="r1"),
         helper.make_node("Gemm", ["a", "w2"], ["b"], name="g2"),
         helper.make_node("Add", ["a", "b"], ["c"], name="add"),
         *nodes, helper.make_node("Gemm", ["d", "w3"], ["y"], name="g3")],
        "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [w("w1", 4, 6), w("w2", 6, 6), w("w3", 6, 3), scalar("zero", 0.0), scalar("six", 6.0)], value_info=info)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(clip_floor.DOMAIN, 1)])


@pytest.mark.parametrize("kind", ["Relu", "Clip", "Max", "LeakyRelu", "ClipFloor"])
def test_the_walk_stops_at_every_activation_kind_after_a_residual_add(kind):
    """a's spikes reach g2 (6 synapses each) and, through the residual Add, the activation: the
    next spiking layer pays for its own spikes, so g3's synapses are never charged to a."""
    model = _residual_then(kind)
    walk = energy._Fanout(*_walk_parts(model))
    assert walk("a") == pytest.approx(6.0)


def test_an_op_registered_twice_is_refused():
    from onnx2snn.ops import OpSpec, Role
    from onnx2snn.ops.registry import register

    with pytest.raises(ValueError, match="registered twice"):
        register(OpSpec("Relu", Role.ACTIVATION))
