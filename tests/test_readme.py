"""README's Python example runs as written (from the repository root)."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = block.replace('"models/', f'"{ROOT}/models/')
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["scores"].shape == (4, 10)
    assert os.path.isfile(tmp_path / "digits_cnn.snn.onnx")
    assert namespace["stage"].config.T == 4 and namespace["snn_8"].graph.node
