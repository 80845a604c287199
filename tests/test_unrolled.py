"""--unroll: the converted model in standard ONNX ops only, equal to the IFNeuron model; execution
providers and threads from the CLI."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx2snn
from conftest import MODELS
from onnx2snn.cli import main
from onnx2snn.export import unroll


@pytest.mark.parametrize("name", ["digits_cnn", "digits_resnet"])
def test_unrolled_model_is_standard_and_equal(name, tmp_path):
    base = MODELS / name
    snn = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", onnx2snn.Config(T=4)).snn
    flat = unroll(snn)
    assert not flat.functions
    assert {n.domain for n in flat.graph.node} <= {"", "ai.onnx"}
    assert all(o.domain in ("", "ai.onnx") for o in flat.opset_import)
    path = onnx2snn.save_model(flat, tmp_path / "flat.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    x = np.load(f"{base}.test.npz")["x"][:64].astype(np.float32)
    feed = {snn.graph.input[0].name: x}
    plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    ours = onnx2snn.simulate(snn, x)[snn.graph.output[0].name]
    np.testing.assert_allclose(plain, ours, rtol=1e-5, atol=1e-5)
    assert (plain.argmax(1) == ours.argmax(1)).all()


def test_cli_unroll_provider_and_threads(tmp_path, capsys):
    for suffix in (".onnx", ".calib.npz", ".test.npz"):
        shutil.copy(MODELS / f"digits_mlp{suffix}", tmp_path / f"digits_mlp{suffix}")
    model = tmp_path / "digits_mlp.onnx"
    code = main([str(model), "-T", "4", "--unroll", "--provider", "CPUExecutionProvider", "--threads", "1",
                 "--json", "-q"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    written = onnx.load(out["output"])
    assert not written.functions and all(n.domain in ("", "ai.onnx") for n in written.graph.node)
    assert main([str(model), "--provider", "NoSuchExecutionProvider", "-q"]) == 2
    assert "NoSuchExecutionProvider" in capsys.readouterr().err
