"""A small NIR graph simulator in numpy, independent of onnx2snn's ONNX graph and runtime.

It reads only the ``nir.NIRGraph`` (nodes, edges, parameters, IF metadata), evaluates it one time
step at a time (a node's input is the sum of its incoming edges), and returns the output averaged
over T plus every IF node's spike count. Used by the tests to prove the NIR export.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _conv(x, node):
    w, dims = node.weight, node.weight.ndim - 2
    pad = np.broadcast_to(np.asarray(node.padding), (dims,))
    stride = np.broadcast_to(np.asarray(node.stride), (dims,))
    dil = np.broadcast_to(np.asarray(node.dilation), (dims,))
    x = np.pad(x, [(0, 0), (0, 0)] + [(int(p), int(p)) for p in pad])
    k = [(s - 1) * int(d) + 1 for s, d in zip(w.shape[2:], dil)]
    win = sliding_window_view(x, k, axis=tuple(range(2, 2 + dims)))  # [B, C, *out, *k]
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, int(s)) for s in stride)
              + tuple(slice(None, None, int(d)) for d in dil)]
    g = node.groups
    cin, cout = x.shape[1] // g, w.shape[0] // g
    outs = []
    for i in range(g):
        part = win[:, i * cin:(i + 1) * cin]
        wi = w[i * cout:(i + 1) * cout]
        sub = "bc" + "xyz"[:dims] + "klm"[:dims]
        outs.append(np.einsum(f"{sub},oc{'klm'[:dims]}->bo{'xyz'[:dims]}", part, wi))
    bias = node.bias.reshape((1, -1) + (1,) * dims)
    return np.concatenate(outs, axis=1) + bias


def _avgpool(x, node):
    k, s = [int(v) for v in node.kernel_size], [int(v) for v in node.stride]
    win = sliding_window_view(x, k, axis=(2, 3))[:, :, ::s[0], ::s[1]]
    return win.mean(axis=(-2, -1))


def simulate(graph, x: np.ndarray, T: int):
    """(mean output over T, {IF node name: spike count per sample [B, ...]})."""
    import nir

    nodes, inputs = graph.nodes, {}
    for src, dst in graph.edges:
        inputs.setdefault(dst, []).append(src)
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for src in inputs.get(name, []):
            visit(src)
        order.append(name)
    for name in nodes:
        visit(name)
    state = {n: np.broadcast_to(node.metadata.get("v0", 0.0), (len(x),) + node.v_threshold.shape).astype(np.float64)
             for n, node in nodes.items() if isinstance(node, nir.IF)}
    counts = {n: np.zeros_like(v) for n, v in state.items()}
    total = None
    for _ in range(T):
        values = {}
        for name in order:
            node = nodes[name]
            if isinstance(node, nir.Input):
                values[name] = x.astype(np.float64)
                continue
            u = sum(values[s] for s in inputs[name])
            if isinstance(node, (nir.Conv2d, nir.Conv1d)):
                out = _conv(u, node)
            elif isinstance(node, nir.Affine):
                out = u @ node.weight.T + node.bias
            elif isinstance(node, nir.Scale):
                out = u * node.scale
            elif isinstance(node, nir.AvgPool2d):
                out = _avgpool(u, node)
            elif isinstance(node, nir.Flatten):
                out = u.reshape(len(u), -1)
            elif isinstance(node, nir.IF):
                v = state[name] + node.r * u
                zero = node.metadata.get("reset") == "zero"  # NIR's own IF: reset to 0, fire on v > theta
                fired = v > node.v_threshold if zero else v >= node.v_threshold
                state[name] = v - fired * (v if zero else node.v_threshold)
                counts[name] += fired
                out = fired.astype(np.float64)
            elif isinstance(node, nir.Output):
                out = u
            else:
                raise NotImplementedError(type(node).__name__)
            values[name] = out
        step = values["output"]
        total = step if total is None else total + step
    return total / T, counts
