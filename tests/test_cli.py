"""The command-line contract: outputs, JSON, default data, exit codes and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from graphs import mlp
from onnx2snn.cli import main

JSON_KEYS = {"model", "output", "T", "ann_accuracy", "snn_accuracy", "agreement", "layers", "seconds"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "onnx2snn", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_json_contract_and_default_output(shipped):
    before = shipped.read_bytes()
    proc = run_cli(shipped, "-T", 8, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert JSON_KEYS <= set(report)
    assert report["T"] == 8 and report["output"] == str(shipped.with_name("digits_mlp.snn.onnx"))
    assert 0 <= report["agreement"] <= 1 and report["ann_accuracy"] > 0.9
    assert all({"name", "threshold", "firing_rate"} <= set(layer) for layer in report["layers"])
    assert all(layer["threshold"] > 0 and 0 <= layer["firing_rate"] <= 1 for layer in report["layers"])
    assert "SNN accuracy" in proc.stderr, "human output goes to stderr with --json"
    assert shipped.read_bytes() == before, "the input model is never overwritten"
    onnx.checker.check_model(onnx.load(report["output"]), full_check=True)


def test_explicit_paths_and_data_without_labels(shipped, tmp_path):
    test = np.load(shipped.with_name("digits_mlp.test.npz"))
    np.savez(tmp_path / "nolabels.npz", x=test["x"][:50])
    out = tmp_path / "out" / "snn.onnx"
    out.parent.mkdir()
    proc = run_cli(shipped, "-T", 4, "-o", out, "--calib", shipped.with_name("digits_mlp.calib.npz"),
                   "--data", tmp_path / "nolabels.npz", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ann_accuracy"] is None and report["snn_accuracy"] is None
    assert report["agreement"] is not None and report["samples"] == 50
    assert out.is_file()


def test_model_without_sample_data_exits_2_with_a_hint(tmp_path):
    onnx.save(mlp(), tmp_path / "bare.onnx")
    proc = run_cli(tmp_path / "bare.onnx")
    assert proc.returncode == 2
    assert "--calib" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bare.snn.onnx").exists()


@pytest.mark.parametrize("args,needle", [
    (["missing.onnx"], "does not exist"),
    (["{model}", "-T", "0"], "T=0"),
    (["{model}", "--percentile", "101"], "percentile"),
    (["{model}", "-o", "{model}"], "is the input model"),
    (["{model}", "-o", "{tmp}/no/such/dir/x.onnx"], "does not exist"),
    (["{model}", "--nir", "{tmp}/x.nir", "--nir-neuron", "LIF"], "--target nir-portable"),
    (["{model}", "--target", "int8", "--phase", "1"], "phase 2"),
])
def test_bad_input_exits_2_with_one_line(shipped, tmp_path, capsys, args, needle):
    args = [a.format(model=shipped, tmp=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and needle in err[-1] and err[-1].startswith("onnx2snn: error:")
    assert not list(tmp_path.rglob("*.snn.onnx")) and not list(tmp_path.rglob("*.part"))


def test_help_lists_options_with_defaults():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for option in ("-T", "--calib", "--data", "--json", "--percentile", "(default: 16)"):
        assert option in proc.stdout


def test_sweep_and_baseline_method(shipped):
    proc = run_cli(shipped, "-T", 4, "--method", "percentile-half", "--sweep", "1,2,8", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["T"] for r in report["sweep"]] == [1, 2, 8]
    assert all(0 <= r["snn_accuracy"] <= 1 for r in report["sweep"])
    assert report["method"] == "percentile-half" and report["phase"] == 1
    assert report["percentile"] == 99.9 and report["granularity"] == "tensor"
    assert "sweep:" in proc.stderr


def test_bad_sweep_is_a_usage_error(shipped):
    proc = run_cli(shipped, "--sweep", "1,x")
    assert proc.returncode == 2 and "comma-separated" in proc.stderr


def test_json_stdout_stays_clean_when_a_library_prints(shipped, capsys, monkeypatch):
    """onnx-graphsurgeon prints its warnings to stdout; with --json, stdout is the JSON alone."""
    import onnx2snn.cli as cli
    convert = cli.convert

    def noisy(*args, **kwargs):
        print("[W] a library's warning on stdout")
        return convert(*args, **kwargs)

    monkeypatch.setattr(cli, "convert", noisy)
    assert main([str(shipped), "-T", "2", "--json", "-q"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["T"] == 2
    assert "a library's warning" in captured.err


def test_target_is_reported_and_the_portable_nir_written(shipped, tmp_path):
    """--target nir-portable --nir: the report names the target and the NIR file holds only what
    sinabs, snnTorch and Norse import."""
    pytest.importorskip("nir")
    import nir
    proc = run_cli(shipped, "-T", 4, "--target", "nir-portable", "--nir", tmp_path / "m.nir", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["target"] == "nir-portable" and report["nir"] == str(tmp_path / "m.nir")
    assert "target nir-portable" in proc.stderr
    graph = nir.read(tmp_path / "m.nir")
    assert {type(n).__name__ for n in graph.nodes.values()} == {"Input", "Output", "Affine", "IF", "Flatten"}
