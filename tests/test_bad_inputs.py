"""The bad-input corpus, each case through the CLI and through the API.

CLI: exit status 2, one line on stderr that starts with 'onnx2snn: error:' and names the problem,
no traceback, and no file left behind in the working folder. API: an ``Onnx2SnnError`` subclass.
"""

import shutil

import numpy as np
import onnx
import pytest
from onnx import external_data_helper

import onnx2snn
from conftest import MODELS
from graphs import GraphBuilder
from onnx2snn import Config
from onnx2snn.cli import main


def _save(g, out, path):
    onnx.save(g.model({"x": ["N", 1, 8, 8]}, {out: ["N", 4]}), path)


def _no_relu(path):
    g = GraphBuilder()
    _save(g, g.gemm(g.op("Flatten", ["x"]), 64, 4), path)


def _sigmoid(path):
    g = GraphBuilder()
    h = g.op("Sigmoid", [g.gemm(g.op("Flatten", ["x"]), 64, 8)])
    h = g.op("Relu", [g.gemm(h, 8, 8)])
    _save(g, g.gemm(h, 8, 4), path)


def _external(location):
    def make(path):
        model = onnx.load(MODELS / "digits_mlp.onnx")
        tensor = model.graph.initializer[0]
        external_data_helper.set_external_data(tensor, location=location)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.ClearField("raw_data")
        onnx.save(model, path)
    return make


def _bytes(data):
    return lambda path: path.write_bytes(data(path))


MODEL_CASES = {  # name: (how to make MODEL in the folder, words the message must contain)
    "missing": (None, "does not exist"),
    "directory": (lambda p: p.mkdir(), "directory"),
    "empty": (_bytes(lambda p: b""), "empty"),
    "truncated": (_bytes(lambda p: (MODELS / "digits_mlp.onnx").read_bytes()[:3000]), "ONNX"),
    "garbled": (_bytes(lambda p: np.random.default_rng(0).bytes(5000)), "ONNX"),
    "text": (_bytes(lambda p: b"this is not a model\n"), "ONNX"),
    "no_relu": (_no_relu, "ReLU"),
    "sigmoid": (_sigmoid, "Sigmoid"),
    "external_missing": (_external("gone.data"), "missing"),
    "external_parent": (_external("../../etc/passwd"), "outside"),
    "external_absolute": (_external("/etc/passwd"), "outside"),
}

x_ok = np.load(MODELS / "digits_mlp.calib.npz")["x"][:64]
DATA_CASES = {  # name: (calibration arrays, words)
    "nan": ({"x": np.where(np.arange(x_ok.size).reshape(x_ok.shape) == 5, np.nan, x_ok)}, "NaN"),
    "inf": ({"x": np.where(np.arange(x_ok.size).reshape(x_ok.shape) == 5, np.inf, x_ok)}, "NaN/Inf"),
    "shape": ({"x": x_ok[..., :5]}, "shape"),
    "dtype": ({"x": x_ok.astype(str)}, "dtype"),
    "name": ({"pixels": x_ok}, "no array for model input"),
    "zero": ({"x": x_ok[:0]}, "no samples"),
    "labels": ({"x": x_ok, "y": np.full(len(x_ok), 99)}, "out of range"),
}
OPTION_CASES = {  # name: (CLI args, Config kwargs or None, words)
    "T0": (["-T", "0"], {"T": 0}, "T=0"),
    "Tneg": (["-T", "-3"], {"T": -3}, "T=-3"),
    "Thuge": (["-T", "1000000000"], {"T": 10**9}, "T="),
    "p0": (["--percentile", "0"], {"percentile": 0.0}, "percentile"),
    "p101": (["--percentile", "101"], {"percentile": 101.0}, "percentile"),
    "pnan": (["--percentile", "nan"], {"percentile": float("nan")}, "percentile"),
}
OUTPUT_CASES = {  # name: (-o value relative to the folder, words)
    "same_as_input": ("digits_mlp.onnx", "is the input model"),
    "missing_folder": ("no/such/dir/out.onnx", "does not exist"),
    "read_only_folder": ("/proc/out.snn.onnx", "not writable"),
    "is_a_directory": ("adir", "directory"),
}


@pytest.fixture
def folder(tmp_path):
    for suffix in (".onnx", ".calib.npz", ".test.npz"):
        shutil.copy(MODELS / f"digits_mlp{suffix}", tmp_path / f"digits_mlp{suffix}")
    (tmp_path / "adir").mkdir()
    return tmp_path


def cli_fails_cleanly(args, folder, capsys, needle):
    before = sorted(p.name for p in folder.rglob("*"))
    code = main([str(a) for a in args] + ["-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("onnx2snn: error:"), err
    assert needle.lower() in err[0].lower() and "Traceback" not in err[0]
    assert sorted(p.name for p in folder.rglob("*")) == before, "a file was left behind"


@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_model(case, folder, capsys):
    make, needle = MODEL_CASES[case]
    path = folder / f"{case}.onnx"
    if make:
        make(path)
    calib = folder / "digits_mlp.calib.npz"
    cli_fails_cleanly([path, "--calib", calib, "-T", "2"], folder, capsys, needle)
    with pytest.raises(onnx2snn.Onnx2SnnError, match=f"(?i){needle}"):
        onnx2snn.convert(path, calib, Config(T=2))


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data(case, folder, capsys):
    arrays, needle = DATA_CASES[case]
    np.savez(folder / "bad.npz", **arrays)
    model = folder / "digits_mlp.onnx"
    args = [model, "-T", "2", "--calib", folder / "bad.npz"] if case != "labels" else \
        [model, "-T", "2", "--data", folder / "bad.npz"]
    cli_fails_cleanly(args, folder, capsys, needle)
    with pytest.raises(onnx2snn.DataError, match=needle):
        if case == "labels":
            onnx2snn.convert(model, folder / "digits_mlp.calib.npz", Config(T=2), data=arrays)
        else:
            onnx2snn.convert(model, arrays, Config(T=2))


@pytest.mark.parametrize("case", OPTION_CASES)
def test_bad_option(case, folder, capsys):
    args, kwargs, needle = OPTION_CASES[case]
    cli_fails_cleanly([folder / "digits_mlp.onnx", *args], folder, capsys, needle)
    with pytest.raises(onnx2snn.ConfigError, match=needle):
        Config(**kwargs)


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_bad_output(case, folder, capsys):
    out, needle = OUTPUT_CASES[case]
    target = out if out.startswith("/") else folder / out
    cli_fails_cleanly([folder / "digits_mlp.onnx", "-T", "2", "-o", target], folder, capsys, needle)
    snn = onnx2snn.convert(folder / "digits_mlp.onnx", folder / "digits_mlp.calib.npz", Config(T=2)).snn
    with pytest.raises(onnx2snn.OutputError, match=needle):
        onnx2snn.save_model(snn, target, source=folder / "digits_mlp.onnx")


def test_unsupported_nodes_are_listed_on_one_line(folder, capsys):
    g = GraphBuilder()
    h = g.op("Tanh", [g.op("Relu", [g.gemm(g.op("Flatten", ["x"]), 64, 8)])])
    h = g.op("Relu", [g.gemm(g.op("Sigmoid", [g.gemm(h, 8, 8)]), 8, 8)])
    _save(g, g.gemm(h, 8, 4), folder / "two.onnx")
    cli_fails_cleanly([folder / "two.onnx", "--calib", folder / "digits_mlp.calib.npz"], folder, capsys, "Tanh")
    with pytest.raises(onnx2snn.UnsupportedModelError) as err:
        onnx2snn.convert(folder / "two.onnx", {"x": x_ok}, Config(T=2))
    assert {p[1] for p in err.value.problems} == {"Tanh", "Sigmoid"}


def test_corpus_size():
    """The note counts these: keep the number honest."""
    assert len(MODEL_CASES) + len(DATA_CASES) + len(OPTION_CASES) + len(OUTPUT_CASES) + 1 == 29
