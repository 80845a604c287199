"""Graph helpers for the time-major layout: [T*B, ...] rows <-> [T, B, ...] steps."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

INT64_MAX = np.iinfo(np.int64).max


def const(name: str, value, dtype=np.int64) -> gs.Constant:
    return gs.Constant(name, np.asarray(value, dtype=dtype))


def to_steps(graph: gs.Graph, x: gs.Variable, T: int, base: str) -> tuple[gs.Variable, gs.Variable]:
    """Append nodes viewing ``x`` [T*B, ...] as [T, B, ...]; returns (steps, shape of x)."""
    shape = gs.Variable(f"{base}/shape", dtype=np.int64)
    rest = gs.Variable(f"{base}/rest", dtype=np.int64)
    target = gs.Variable(f"{base}/steps_shape", dtype=np.int64)
    steps = gs.Variable(f"{base}/steps", dtype=x.dtype)
    graph.nodes += [
        gs.Node("Shape", f"{base}/shape", inputs=[x], outputs=[shape]),
        gs.Node("Slice", f"{base}/rest", inputs=[shape, const(f"{base}/one", [1]),
                                                  const(f"{base}/end", [INT64_MAX])], outputs=[rest]),
        gs.Node("Concat", f"{base}/steps_shape", attrs={"axis": 0},
                inputs=[const(f"{base}/head", [T, -1]), rest], outputs=[target]),
        gs.Node("Reshape", f"{base}/steps", inputs=[x, target], outputs=[steps]),
    ]
    return steps, shape
