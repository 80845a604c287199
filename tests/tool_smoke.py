"""Child of tests/test_tools.py: import every tool, or run it with --help, in one interpreter.

    python tests/tool_smoke.py TOOLS_DIR   -> one JSON line: {tool: "ok" | "missing MODULE" | "error ..."}

A runnable tool must print its usage (argparse's, or its docstring naming it).

A tool with a ``__main__`` block runs as ``python tools/NAME.py --help`` would; a helper module is
imported. A dev-only dependency that is not installed (torch, ...) is reported as missing."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
from pathlib import Path


def check(path: Path) -> str:
    runnable = '__name__ == "__main__"' in path.read_text()
    sys.argv = [str(path), "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(str(path), run_name="__main__" if runnable else path.stem)
    except SystemExit as done:
        if done.code not in (0, None):
            return f"error: exit {done.code}: {out.getvalue()[-300:]}"
    except ModuleNotFoundError as missing:
        return f"missing {missing.name}"
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return f"error: {type(exc).__name__}: {exc}"
    if runnable and "usage" not in out.getvalue().lower() and path.name not in out.getvalue():
        return f"error: --help printed no usage: {out.getvalue()[:200]!r}"
    return "ok"


if __name__ == "__main__":
    tools = Path(sys.argv[1])
    sys.path.insert(0, str(tools))  # as ``python tools/NAME.py`` puts the script's folder first
    print(json.dumps({p.stem: check(p) for p in sorted(tools.glob("*.py"))}))
