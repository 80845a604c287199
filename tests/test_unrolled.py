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
from onnx2snn.snn.unrolled import SCAN_MIN_NEURONS
from onnx2snn.simulation.runtime import make_session


@pytest.mark.parametrize("name", ["digits_cnn", "digits_resnet"])
def test_unrolled_model_is_standard_and_equal(name, tmp_path, converted):
    base = MODELS / name
    snn = converted(name, 4).snn
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


def test_auto_form_scans_the_large_layers_with_identical_output():
    """mnist_cnn has IF layers of 12,544 .. 128 neurons per sample: "auto" runs those of at least
    SCAN_MIN_NEURONS as a Scan, and every form gives the function's output bit for bit -- including
    the sessions onnx2snn itself runs (make_session). The first layer's constant current is read at
    every step instead of being tiled T times."""
    base = MODELS / "mnist_cnn"
    snn = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", onnx2snn.Config(T=4, phase=1)).snn
    sizes = {v.name: int(np.prod([d.dim_value for d in v.type.tensor_type.shape.dim[1:]]))
             for v in snn.graph.value_info}
    large = sum(sizes[n.input[0]] >= SCAN_MIN_NEURONS for n in snn.graph.node if n.op_type == "IFNeuron")
    assert 0 < large < sum(n.op_type == "IFNeuron" for n in snn.graph.node)
    assert sum(n.op_type == "Scan" for n in unroll(snn, "auto").graph.node) == large
    x = np.load(f"{base}.test.npz")["x"][:8].astype(np.float32)
    feed = {snn.graph.input[0].name: x}
    stock = ort.InferenceSession(snn.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert any(n.op_type == "Tile" for n in snn.graph.node)  # the first layer's constant current
    for form in ("steps", "scan", "auto"):
        lowered = unroll(snn, form)
        onnx.checker.check_model(lowered, full_check=True)
        assert not any(n.op_type == "Tile" for n in lowered.graph.node)  # read at every step instead
        out = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        np.testing.assert_array_equal(out, stock)
    np.testing.assert_array_equal(make_session(snn, onnx2snn.Config(T=4)).run(None, feed)[0], stock)
    with pytest.raises(onnx2snn.errors.ConfigError, match="loop form"):
        unroll(snn, "loop")


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
    assert not any(n.op_type == "Scan" for n in written.graph.node)  # --unroll alone: step by step
    assert main([str(model), "-T", "4", "--unroll", "scan", "--phase", "1", "-q"]) == 0
    assert any(n.op_type == "Scan" for n in onnx.load(str(tmp_path / "digits_mlp.snn.onnx")).graph.node)
    assert main([str(model), "--provider", "NoSuchExecutionProvider", "-q"]) == 2
    assert "NoSuchExecutionProvider" in capsys.readouterr().err


def _families():
    from graphs import lrn_cnn, shufflenet_like, wide_cnn
    from op_graphs import FAMILIES
    graphs = {name: build for name, build in FAMILIES.items()}
    graphs.update(lrn=lrn_cnn, shufflenet_unit=shufflenet_like, wide=lambda: wide_cnn(channels=8, size=16))
    return graphs


@pytest.mark.parametrize("name", sorted(_families()))
def test_every_form_gives_the_function_output(name):
    """Every op family's graph: the IFNeuron function (stock onnxruntime), the step-by-step form and
    the Scan form give the same output, bit for bit."""
    from graphs import inputs
    from op_graphs import input_shape

    model = _families()[name]()
    x = inputs(input_shape(model), n=6, seed=4)
    snn = onnx2snn.convert(model, {"x": x}, onnx2snn.Config(T=4, phase=1)).snn
    stock = ort.InferenceSession(snn.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for form in ("steps", "scan"):
        lowered = unroll(snn, form)
        onnx.checker.check_model(lowered, full_check=True)
        out = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        np.testing.assert_array_equal(out[0], stock, err_msg=form)
