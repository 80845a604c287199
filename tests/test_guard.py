"""The network-level check of phase 2: kept when it helps, reverted (and reported) when phase 1
reproduces the ANN better on the calibration samples."""

import dataclasses

import numpy as np

import onnx2snn
from conftest import MODELS
from onnx2snn import Config
from onnx2snn.graph import load
from onnx2snn.calibration.calibrate import phase2
from onnx2snn.data import load_npz
from onnx2snn.simulation.evaluation import Evaluation
from onnx2snn.calibration.guard import _better, _unbeatable, check_phase2
from onnx2snn.graph.plan import make_plan
from onnx2snn.report import format_text, summary
from onnx2snn.snn.rewrite import to_snn
from onnx2snn.simulation.runtime import run
from onnx2snn.simulation.stepwise import run_snn
from onnx2snn.calibration.stats import collect
from onnx2snn.calibration.thresholds import phase1


def _ev(agreement, rmse, task="classification"):
    return Evaluation("d", 10, "y", None, None, agreement, {}, rmse, task)


def test_better_needs_a_margin_beyond_sampling_noise():
    assert _better(_ev(0.75, 3.5), _ev(0.66, 3.4), 256), "9 points on 256 samples: phase 1 is better"
    assert not _better(_ev(0.933, 0.2), _ev(0.9, 0.1), 120), "4 samples of 120 is noise"
    assert not _better(_ev(0.9, 0.1), _ev(0.9, 0.2), 100), "a tie keeps phase 2"
    assert not _better(_ev(0.8, 0.1), _ev(0.9, 0.2), 100)
    assert _better(_ev(None, 0.1, "regression"), _ev(None, 0.3, "regression"), 100)


def test_phase1_is_not_run_when_it_could_not_win():
    """With at most one disagreement in 256, even a perfect phase 1 is within noise: it is skipped."""
    assert _unbeatable(_ev(1.0, 0.1), 256) and _unbeatable(_ev(255 / 256, 0.1), 256)
    assert not _unbeatable(_ev(254 / 256, 0.1), 256)
    assert _better(_ev(1.0, 0.1), _ev(254 / 256, 0.1), 256), "the bound is tight: 2 in 256 can lose"
    assert not _unbeatable(_ev(None, 0.1, "regression"), 256)


def test_check_skips_phase1_only_when_phase2_agrees_almost_everywhere(monkeypatch):
    """On mnist_cnn at T = 16 phase 2 agrees with the ANN on every search sample: the check returns
    without a phase-1 run. Forcing one disagreement more than the bound runs phase 1 again."""
    import onnx2snn.calibration.guard as guard

    path = MODELS / "mnist_cnn.onnx"
    ann = load.normalize(load.load_model(path))
    plan, config = make_plan(ann), Config(T=16)
    calib = load_npz(path.with_suffix(".calib.npz"), ann)
    p1 = phase1(plan, collect(ann, plan, calib, config), config)
    result = phase2(ann, plan, p1, calib, config)
    runs = []
    monkeypatch.setattr(guard, "run_snn", lambda *a, **k: runs.append(1) or run_snn(*a, **k))
    check = check_phase2(ann, plan, p1, result, calib, config)
    assert check.kept and check.agreement_phase2 == 1.0 and check.agreement_phase1 is None and not runs
    flipped = result.snn_scores.copy()
    for i in range(2):  # two samples whose SNN top-1 now differs from the ANN's
        flipped[i] = np.roll(result.ann_scores[i], 1)
    check = check_phase2(ann, plan, p1, dataclasses.replace(result, snn_scores=flipped), calib, config)
    assert runs and check.agreement_phase1 is not None and check.agreement_phase2 == 1 - 2 / len(flipped)


def _convert(name, T, **kw):
    base = MODELS / name
    return onnx2snn.convert(f"{base}.onnx", f"{base}.calib.npz", Config(T=T, **kw), data=f"{base}.test.npz")


def test_phase2_kept_where_it_helps(monkeypatch):
    """digits_cnn at T = 1 (measured: calibration agreement 93.8 % for phase 1, 98.8 % for phase 2):
    phase 2 is kept; the phase-1 run stops once it cannot win, and the whole run decides the same."""
    r = _convert("digits_cnn", 1)
    assert r.phase2_check.kept and r.phase2_check.agreement_phase1 is None  # stopped early
    assert any(p.source.startswith("phase 2") for p in r.params.values())
    import onnx2snn.calibration.guard as guard
    monkeypatch.setattr(guard, "_hopeless", lambda *a: None)  # run phase 1 to the end
    full = _convert("digits_cnn", 1)
    assert full.phase2_check.kept and full.phase2_check.agreement_phase2 > full.phase2_check.agreement_phase1
    assert full.snn.SerializeToString() == r.snn.SerializeToString()


def test_phase2_reverted_at_T1_on_the_resnet_and_reported():
    """digits_resnet at T=1: the per-layer optima give a worse network (measured: 65 % vs 75 %
    calibration agreement); the phase-1 SNN is kept and the report says so."""
    r, one = _convert("digits_resnet", 1), _convert("digits_resnet", 1, phase=1)
    assert not r.phase2_check.kept
    assert r.phase2_check.agreement_phase1 > r.phase2_check.agreement_phase2
    for name, p in r.params.items():
        np.testing.assert_array_equal(p.threshold, one.params[name].threshold)
    assert r.evaluation.snn_accuracy == one.evaluation.snn_accuracy
    s = summary(r, "m", None)
    assert s["phase2_check"]["kept"] is False and "phase 2 was reverted" in format_text(s)


def test_phase2_scores_from_its_cache_are_the_final_snns():
    """The check reads phase 2's SNN output on the search set from the cached spikes; it must be
    what the rewritten model computes on those samples."""
    path = MODELS / "digits_resnet.onnx"
    ann = load.normalize(load.load_model(path))
    plan, config = make_plan(ann), Config(T=4)
    calib = load_npz(path.with_suffix(".calib.npz"), ann).head(150)
    result = phase2(ann, plan, phase1(plan, collect(ann, plan, calib, config), config), calib, config)
    data = calib.head(len(result.snn_scores))
    final = run(to_snn(result.model, plan, result.params, 4), data, config, [result.score])[result.score]
    np.testing.assert_allclose(result.snn_scores, final, rtol=1e-5, atol=1e-5)
    ann_scores = run(ann, data, config, [result.score])[result.score]
    np.testing.assert_allclose(result.ann_scores, ann_scores, rtol=1e-6, atol=1e-6)
