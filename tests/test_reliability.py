"""Atomic outputs (also under SIGINT), byte-identical determinism, batch-size independence of the
statistics, float16/float64 models, and a property test over random small ReLU graphs."""

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import TensorProto, numpy_helper

import onnx2snn
from conftest import MODELS
from graphs import GraphBuilder, inputs, mlp, run_ort
from onnx2snn import Config
from onnx2snn.export import atomic_write


def test_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "out.snn.onnx") as handle:
            handle.write(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_interrupted_report_leaves_nothing(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from onnx2snn.export import report_html
    from onnx2snn.report import summary

    r = onnx2snn.convert(mlp(), {"x": inputs((8,), n=32)}, Config(T=2), data={"x": inputs((8,), n=32)})
    monkeypatch.setattr(report_html, "_page", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        report_html.write_report(summary(r, "m", None), tmp_path / "rep")
    assert list(tmp_path.iterdir()) == []


def test_sigint_during_calibration_writes_nothing(tmp_path):
    for suffix in (".onnx", ".calib.npz", ".test.npz"):
        shutil.copy(MODELS / f"mnist_cnn{suffix}", tmp_path / f"mnist_cnn{suffix}")
    proc = subprocess.Popen([sys.executable, "-m", "onnx2snn", str(tmp_path / "mnist_cnn.onnx"), "-T", "32",
                             "--nir", str(tmp_path / "m.nir")], stderr=subprocess.PIPE, text=True,
                            # a shell's background job inherits SIGINT ignored; Python then never raises
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)  # imports, load, statistics: calibration is under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; nothing was written" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist_cnn.calib.npz", "mnist_cnn.onnx",
                                                           "mnist_cnn.test.npz"]


def test_same_input_gives_byte_identical_model(tmp_path, converted):
    """Two conversions in one process (the session's shared one, evaluated on test data, and a
    fresh one without): byte-identical SNNs."""
    base = MODELS / "digits_cnn"
    first = converted("digits_cnn", 4).snn
    second = onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", Config(T=4)).snn
    assert first.SerializeToString() == second.SerializeToString()
    onnx2snn.save_model(first, tmp_path / "a.onnx")
    onnx2snn.save_model(second, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_statistics_do_not_depend_on_batch_size():
    """Phase-1 thresholds are identical for any batch size (exact counts, exact power-of-two
    histogram ranges); phase-2 parameters (float sums in a different order) within 1e-5."""
    base = MODELS / "digits_cnn"
    runs = [onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", Config(T=4, batch_size=b)) for b in (7, 64, 500)]
    for a, b in zip(runs, runs[1:]):
        for name in a.stats:
            np.testing.assert_array_equal(a.stats[name].maximum, b.stats[name].maximum)
        for name, p in a.params.items():
            q = b.params[name]
            np.testing.assert_allclose(p.threshold, q.threshold, rtol=1e-5)
            np.testing.assert_allclose(p.v0, q.v0, rtol=1e-5, atol=1e-5 * float(np.max(p.threshold)))


@pytest.mark.parametrize("elem,dtype", [(TensorProto.DOUBLE, np.float64), (TensorProto.FLOAT16, np.float16)])
def test_float64_and_float16_models_convert(elem, dtype):
    model = mlp()
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(dtype), init.name))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.elem_type = elem
    x = inputs((8,), n=64)
    r = onnx2snn.convert(model, {"x": x}, Config(T=64), data={"x": x})
    onnx.checker.check_model(r.snn, full_check=True)
    out = onnx2snn.simulate(r.snn, x)["y"]
    assert out.dtype == dtype and r.evaluation.agreement >= 0.95
    assert all(np.isfinite(p.threshold).all() and (p.threshold > 0).all() for p in r.params.values())


@st.composite
def relu_graphs(draw):
    """A random small ReLU network: dense or conv, depth 1-3, width 2-8, optional residual."""
    conv, depth = draw(st.booleans()), draw(st.integers(1, 3))
    width, residual = draw(st.integers(2, 8)), draw(st.booleans())
    g = GraphBuilder(seed=draw(st.integers(0, 10_000)))
    h, shape = ("x", ["N", 2, 5, 5]) if conv else ("x", ["N", 6])
    cin = 2 if conv else 6
    for _ in range(depth):
        pre = g.conv(h, cin, width) if conv else g.gemm(h, cin, width)
        if residual and cin == width:
            pre = g.op("Add", [pre, h])
        h, cin = g.relu(pre), width
    if conv:
        h = g.op("Flatten", [g.op("GlobalAveragePool", [h])])
    y = g.gemm(h, width, 3)
    return g.model({"x": shape}, {y: ["N", 3]}), tuple(shape[1:])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(relu_graphs())
def test_random_relu_graphs_converge(case):
    model, shape = case
    x = inputs(shape, n=48)
    snn = onnx2snn.convert(model, {"x": x}, Config(T=512, phase=1, percentile=100)).snn
    ann = run_ort(model, {"x": x})[0]
    out = next(iter(onnx2snn.simulate(snn, x).values()))
    scale = max(1.0, float(np.abs(ann).max()))
    assert np.abs(out - ann).max() <= 0.05 * scale
