"""The memory budget: sizes parsed, run footprints against onnxruntime's, runs split over samples
and time steps, results independent of the budget, a conversion within its limit in a child process,
and an impossible budget refused."""

import contextlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import pytest

from conftest import MODELS
from graphs import cnn, inputs, wide_cnn
import onnx2snn
from onnx2snn import Config, ConfigError
from onnx2snn.simulation import budget
from onnx2snn.graph import load
from onnx2snn.simulation.budget import Budget, MemoryBudgetError
from onnx2snn.simulation.footprint import Footprint, footprint
from onnx2snn.simulation.runtime import expose, make_session, run

MIB = 1 << 20


@pytest.mark.parametrize("text, size", [("2GiB", 2 << 30), ("512MiB", 512 * MIB), ("1.5 GB", 1_500_000_000),
                                        ("4G", 4 << 30), ("1000000", 1_000_000)])
def test_sizes_parse(text, size):
    assert budget.parse_size(text) == size


@pytest.mark.parametrize("bad", ["two gigs", "5 parsecs", "-1G", "1e9", ""])
def test_bad_sizes_are_refused_with_an_example(bad):
    with pytest.raises(ConfigError, match="2GiB"):
        Config(memory_limit=bad)


def test_a_budget_below_the_minimum_is_refused():
    with pytest.raises(ConfigError, match="memory_limit"):
        Config(memory_limit="1MiB")


def test_default_limit_is_the_smaller_of_4_gib_and_half_the_available():
    available = budget.available_memory()
    expected = budget.DEFAULT_CAP if available is None else min(budget.DEFAULT_CAP, available // 2)
    assert abs(budget.default_limit() - expected) < 64 * MIB  # available memory moves a little


def test_footprint_counts_steps_only_for_time_major_tensors():
    """One sample's tensors: a [B, ...] tensor once, a [T*B, ...] one per step."""
    r = onnx2snn.convert(cnn(), {"x": inputs((2, 6, 6), n=16)}, Config(T=4, phase=1))
    ann_fp = footprint(r.light_ann, ["y"])
    snn_fp = footprint(r.light_snn, ["y"], steps=4)
    assert not ann_fp.dynamic.any() and snn_fp.dynamic.any()
    assert snn_fp.peak(1, 8) > snn_fp.peak(1, 4) > snn_fp.peak(1, 1)  # grows with the steps
    assert snn_fp.peak(2, 4) - snn_fp.fixed == pytest.approx(2 * (snn_fp.peak(1, 4) - snn_fp.fixed))


def test_footprint_is_an_upper_bound_of_onnxruntimes_peak_within_the_safety_margin():
    """The estimate of a wide SNN run against the growth of this process's memory during it."""
    model = wide_cnn(channels=32, size=32)
    r = onnx2snn.convert(model, {"x": inputs((1, 32, 32), n=8)}, Config(T=8, phase=1))
    x = inputs((1, 32, 32), n=16)
    fp = footprint(r.light_snn, ["y"], steps=8)
    code = """
import numpy as np, onnx
from onnx2snn import Config
from onnx2snn.simulation.runtime import make_session
def rss(key):
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key)) * 1024
s = make_session(onnx.load({path!r}), Config(threads=1))
x = np.load({data!r})
s.run(None, {{'x': x[:1]}})
before = rss('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')
s.run(None, {{'x': x}})
print(rss('VmHWM') - before)
"""
    with tempfile.TemporaryDirectory() as folder:
        path, data = os.path.join(folder, "m.onnx"), os.path.join(folder, "x.npy")
        onnx2snn.save_model(r.snn, path)
        np.save(data, x)
        status, out, err, _ = measured([sys.executable, "-c", code.format(path=path, data=data)])
        assert status == 0, err
        grown = int(out)
    assert grown <= budget.SAFETY * fp.peak(16, 8)


def test_run_sizes_split_samples_then_steps():
    fp = Footprint(np.array([10.0, 20.0]), np.array([100.0, 50.0]), 0, ("t", (4,), 100))
    b = Budget(1 << 30)
    b.baseline = 0
    free = lambda n: int(n * budget.SAFETY) + 1  # noqa: E731 - a limit leaving n bytes for runs
    b.limit = free(fp.peak(5, 8))
    assert (b.run_size("s", fp, 64, T=8).samples, b.run_size("s", fp, 64, T=8).steps) == (5, 8)
    assert b.run_size("s", fp, 64, T=8, max_batch=3).samples == 3  # --batch-size is an upper bound
    b.limit = free(fp.peak(1, 4))
    assert (b.run_size("s", fp, 64, T=8).samples, b.run_size("s", fp, 64, T=8).steps) == (1, 4)
    b.limit = free(fp.peak(1, 3))  # 3 steps fit, but chunks must divide T = 8: 2
    assert b.run_size("s", fp, 64, T=8).steps == 2
    with pytest.raises(MemoryBudgetError, match="all T|time steps"):
        b.run_size("s", fp, 64, T=8, chunkable=False)
    b.limit = free(fp.peak(1, 1)) - 2
    with pytest.raises(MemoryBudgetError, match=r"one sample at one time step needs about .*'t' \[4\]"):
        b.run_size("s", fp, 64, T=8)
    assert set(b.report()["stages"]) == {"s"}


@contextlib.contextmanager
def tight(free_bytes: int):
    """A budget whose runs may take ``free_bytes`` whatever the process holds (how small the runs
    get is what these tests control; a real limit is checked in a child process below)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Budget, "free", lambda self, held=0, margin=1.4: free_bytes)
        yield


@pytest.mark.parametrize("name, free", [("digits_resnet", 300 << 10), ("fashion_cnn", 3 * MIB)])
def test_results_do_not_depend_on_the_budget(name, free):
    """A shipped model (MaxPool, residual Add, phase-2 bias; a VGG-like net) converted with runs of
    a few samples gives the same SNN, byte for byte, and the same figures."""
    path = MODELS / f"{name}.onnx"
    calib, test = path.with_suffix(".calib.npz"), load.normalize(load.load_model(path))
    test = onnx2snn.data.load_npz(path.with_suffix(".test.npz"), test).head(200)
    config = Config(T=4, calib_samples=200)
    unlimited = onnx2snn.convert(path, calib, config, data=test)
    with tight(free):
        small = onnx2snn.convert(path, calib, config, data=test)
    stages = small.memory["stages"]
    assert all(stages[k]["samples"][0] < 64 for k in ("statistics", "ANN targets", "phase 2", "ANN"))
    assert min(s["samples"][0] for s in stages.values()) <= 5
    assert small.snn.SerializeToString() == unlimited.snn.SerializeToString()
    assert small.evaluation == unlimited.evaluation and small.fits == unlimited.fits
    assert small.phase2_check == unlimited.phase2_check


def test_time_chunks_give_the_same_conversion():
    """A wide net at T = 16 whose one sample with all steps does not fit the runs: phase 2 and the
    evaluation run in chunks of steps, and the SNN and every figure are the unlimited run's."""
    model, x = wide_cnn(channels=16, size=32), inputs((1, 32, 32), n=8)
    config = Config(T=16)
    unlimited = onnx2snn.convert(model, {"x": x}, config, data={"x": x[:4]})
    with tight(2 * MIB):
        chunked = onnx2snn.convert(model, {"x": x}, config, data={"x": x[:4]})
    steps = {stage: s["steps"] for stage, s in chunked.memory["stages"].items()}
    assert min(steps["phase 2"]) < 16 and any(min(v) < 16 for k, v in steps.items() if k.startswith("SNN"))
    assert chunked.snn.SerializeToString() == unlimited.snn.SerializeToString()
    assert chunked.evaluation == unlimited.evaluation


PEAK = MODELS.parent / "tools" / "peak_rss.py"


def measured(command: list[str]):
    """``command`` in a child of tools/peak_rss.py: (exit status, stdout, stderr, its peak RSS in
    bytes). Not a direct child: a child's peak would count the pages it shared with pytest."""
    with tempfile.TemporaryDirectory() as folder:
        peak = os.path.join(folder, "peak")
        proc = subprocess.run([sys.executable, str(PEAK), peak, *command], capture_output=True, text=True,
                              timeout=600)
        return proc.returncode, proc.stdout, proc.stderr, int(open(peak).read())


def run_cli(*args):
    """The CLI in a child process: (exit status, stdout, stderr, its peak RSS in bytes)."""
    return measured([sys.executable, "-m", "onnx2snn", *map(str, args)])


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A wide net whose default run (64 samples x 32 steps) needs about 850 MiB, with data."""
    folder = tmp_path_factory.mktemp("wide")
    onnx.save(wide_cnn(channels=32, size=32), folder / "wide.onnx")
    np.savez(folder / "wide.calib.npz", x=inputs((1, 32, 32), n=96))
    np.savez(folder / "wide.test.npz", x=inputs((1, 32, 32), n=32, seed=2))
    return folder / "wide.onnx"


@pytest.mark.slow
def test_a_wide_model_converts_within_256_mib_with_the_unlimited_result(wide, tmp_path):
    limited, unlimited = tmp_path / "limited.onnx", tmp_path / "unlimited.onnx"
    code, out, err, peak = run_cli(wide, "-T", 32, "--json", "-o", limited, "--memory-limit", "256MiB")
    assert code == 0, err
    assert peak <= 1.25 * 256 * MIB, peak / MIB
    report = json.loads(out)
    assert report["memory"]["limit"] == 256 * MIB and report["memory"]["stages"]["SNN"]["samples"][1] < 32
    code, out_free, err, _ = run_cli(wide, "-T", 32, "--json", "-o", unlimited)
    assert code == 0, err
    assert limited.read_bytes() == unlimited.read_bytes()
    free = json.loads(out_free)
    for key in ("snn_accuracy", "agreement", "output_rmse", "output_rel_error", "output_cosine"):
        assert report[key] == free[key], key
    assert [layer["firing_rate"] for layer in report["layers"]] == [layer["firing_rate"] for layer in free["layers"]]


def test_simulate_within_a_budget_gives_the_unlimited_outputs(wide, tmp_path):
    r = onnx2snn.convert(wide, wide.with_name("wide.calib.npz"), Config(T=32, phase=1))
    onnx2snn.save_model(r.snn, tmp_path / "snn.onnx")
    x = inputs((1, 32, 32), n=40, seed=3)
    np.save(tmp_path / "x.npy", x)
    code = f"""
import numpy as np, onnx, onnx2snn
y = onnx2snn.simulate(onnx.load({str(tmp_path / 'snn.onnx')!r}), np.load({str(tmp_path / 'x.npy')!r}),
                      onnx2snn.Config(memory_limit="192MiB"))["y"]
np.save({str(tmp_path / 'y.npy')!r}, y)
"""
    status, _, err, peak = measured([sys.executable, "-c", code])
    assert status == 0, err
    assert peak <= 1.25 * 192 * MIB, peak / MIB
    expected = make_session(r.light_snn, Config()).run(["y"], {"x": x})[0]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_an_impossible_budget_exits_2_naming_the_tensor_and_writes_nothing(wide, tmp_path):
    out = tmp_path / "out.onnx"
    code, stdout, err, _ = run_cli(wide, "-T", 32, "-o", out, "--memory-limit", "70MiB", "--json")
    assert code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "needs about" in lines[0] and "--memory-limit" in lines[0], err
    assert "MiB" in lines[0] and "in use when the conversion started" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_the_exposed_ann_run_holds_one_batch_of_outputs():
    """Statistics read every layer of a batch; the batch before is gone when the next runs."""
    model = load.normalize(wide_cnn(channels=16, size=16))
    names = [n.output[0] for n in model.graph.node if n.op_type == "Relu"]
    session = make_session(expose(model, names), Config())
    from onnx2snn.simulation.runtime import run_batches
    from onnx2snn.data import from_arrays
    seen = []
    for _, values in run_batches(session, from_arrays({"x": inputs((1, 16, 16), n=9)}, model), 4, names):
        seen.append(values)
    assert all(not v for v in seen[:-1])  # emptied before the next run


def test_spike_trains_of_several_runs_join_per_time_step():
    """Exposed spike trains are time-major ([T * N, ...]): run over samples in runs of a few, they
    join step by step, as one run gives them."""
    model, x = cnn(), inputs((2, 6, 6), n=10)
    r = onnx2snn.convert(model, {"x": x}, Config(T=4, phase=1))
    layers = [layer.output for layer in r.plan.layers]
    exposed = expose(r.snn, layers)
    data = onnx2snn.data.from_arrays({"x": x}, r.ann)
    whole = run(exposed, data, Config())
    one = footprint(exposed, layers + [o.name for o in r.snn.graph.output], 4).peak(1, 4)
    with tight(int(one) + 1):  # one sample per run
        parts = run(exposed, data, Config())
    for name in layers + [o.name for o in r.snn.graph.output]:
        np.testing.assert_array_equal(parts[name], whole[name], err_msg=name)


def test_footprint_of_a_segment_whose_spike_input_has_no_declared_shape():
    """After a spiking max-pool the SNN's shape inference loses the shapes (a symbolic batch through
    the time axis): a phase-2 segment fed such a spike train is sized from the store's shape."""
    from onnx import TensorProto, helper
    w = onnx.numpy_helper.from_array(np.ones((8, 4, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["s", "w"], ["y"], pads=[1, 1, 1, 1])], "segment",
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    blind = footprint(model, ["y"], 4, {"s"})
    known = footprint(model, ["y"], 4, {"s"}, {"s": (4, 16, 16)})
    per_step = (4 + 8) * 16 * 16 * 4  # the spike input and the current, one sample, one step
    assert known.peak(1, 4) >= 4 * per_step > blind.peak(1, 4)
    assert known.widest[0] == "y" and tuple(known.widest[1]) == (8, 16, 16)
