"""Every tool imports and answers ``--help`` (one child interpreter for all of them).

A tool whose dev-only dependency is not installed here (torch for the training and scale tools,
...) is skipped, naming it; any other failure fails its test."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = sorted(p.stem for p in (ROOT / "tools").glob("*.py"))
DEV_ONLY = {"torch", "torchvision", "tensorflow", "tf2onnx", "sklearn", "skimage", "spikingjelly", "mlxtend",
            "onnxscript", "skl2onnx", "sinabs", "snntorch", "norse", "nirtorch"}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "tool_smoke.py"), str(ROOT / "tools")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_imports_and_answers_help(tool, outcomes):
    outcome = outcomes[tool]
    if outcome.startswith("missing "):
        module = outcome.split()[1].split(".")[0]
        assert module in DEV_ONLY, f"{tool} needs {module}, which is not a dev-only extra"
        pytest.skip(f"{tool}: dev-only dependency {module} is not installed")
    assert outcome == "ok", f"{tool}: {outcome}"
