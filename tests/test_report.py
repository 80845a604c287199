"""--report: an HTML page with its PNG plots, written atomically; refused cleanly when impossible."""

import json

import pytest

pytest.importorskip("matplotlib")

from onnx2snn.cli import main  # noqa: E402

PLOTS = {"accuracy_vs_T.png", "firing_rates.png", "layer_error.png", "thresholds.png", "energy.png"}


def test_report_page_and_plots(shipped, tmp_path, capsys):
    folder = tmp_path / "report"
    assert main([str(shipped), "-T", "4", "--sweep", "2,4", "--report", str(folder), "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    files = {p.name for p in folder.iterdir()}
    assert files == PLOTS | {"index.html"}
    page = (folder / "index.html").read_text()
    assert all(f'src="{name}"' in page for name in PLOTS)
    assert "SOPs" in page and "4.6 pJ" in page and out["report"] == str(folder / "index.html")
    assert all((folder / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in PLOTS)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.")], "temporary folder left"


def test_report_into_missing_parent_is_refused_before_work(shipped, tmp_path, capsys):
    code = main([str(shipped), "-T", "2", "--report", str(tmp_path / "no" / "such" / "dir"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err
    assert not shipped.with_name("digits_mlp.snn.onnx").exists(), "the model was written before the refusal"
