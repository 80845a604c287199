"""The package's layering: every import points down the pipeline, and any module imports first.

Layers, lowest first (README, Layout): the base modules (errors, config, targets, _version, progress, data,
images) -> graph/ and ops/ -> snn/ -> simulation/ -> calibration/ -> pipeline -> cli, report,
energy, export/ and the package root. A module may import from its own layer or a lower one, never
from a higher one, and modules never import each other in a cycle (imports inside functions count).
"""

import ast
import subprocess
import sys
from pathlib import Path

import onnx2snn

PACKAGE = Path(onnx2snn.__file__).parent
BASE = {"errors", "config", "targets", "_version", "progress", "data", "images"}
RANKS = {"graph": 1, "ops": 1, "snn": 2, "simulation": 3, "calibration": 4, "pipeline": 5}
TOP = 6  # cli, report, energy, export/, __init__, __main__


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def rank(module: str) -> int:
    parts = module.split(".")[1:]
    if not parts:
        return TOP  # the package root re-exports the public API: it is the top
    if parts[0] in BASE:
        return 0
    return RANKS.get(parts[0], TOP)


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports (relative ones resolved; ``from X import name``
    counts X.name where that is a module, else X)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("onnx2snn"):
                continue
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("onnx2snn"))
    return found - {module}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def test_imports_only_point_down():
    upward = [f"{m} (layer {rank(m)}) imports {t} (layer {rank(t)})"
              for m, targets in graph().items() for t in sorted(targets) if rank(t) > rank(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    edges = graph()
    # a package's __init__ importing its own submodules (ops registers them) is not a cycle
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(edges.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_every_module_imports_first():
    """Each module imported first into a fresh set of onnx2snn modules (any import order works)."""
    code = """
import importlib, sys
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "onnx2snn" or m.startswith("onnx2snn.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
    importlib.import_module("onnx2snn")
"""
    names = [m for m in modules() if m != "onnx2snn.__main__"]  # that one runs the CLI
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
