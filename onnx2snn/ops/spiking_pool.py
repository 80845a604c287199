"""Spiking max-pooling by running maxima of accumulated input.

A max over binary spikes per step is an OR: its rate over-estimates the max of the rates. Instead,
with X_t the pool input at step t (spikes or currents) and the cumulative input
``C_t = sum_{tau <= t} X_tau``, the pool emits

    Y_t = maxpool(C_t) - maxpool(C_{t-1}),        C_{-1} = 0

so ``sum_t Y_t = maxpool(C_{T-1})`` and the output's mean over T equals the max over the window of
the input's mean -- the ANN's max of the rates, exactly, at every T. For spike trains of one
threshold theta, each window's running max grows by 0 or theta per step, so Y is again a spike
train. The scheme is causal (a counter per input and a running max per window), so it stays
implementable on event-driven hardware.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from .time_axis import const, to_steps


def spiking_max_pool(graph: gs.Graph, node: gs.Node, T: int, stepwise: bool = False) -> None:
    """Rewrite the MaxPool/GlobalMaxPool ``node`` (input: T*B rows, time-major) in place."""
    if stepwise:
        _stepwise_pool(graph, node)
        return
    base = node.name
    x, y = node.inputs[0], node.outputs[0]
    v = lambda s: gs.Variable(f"{base}/{s}", dtype=x.dtype)  # noqa: E731
    steps, x_shape = to_steps(graph, x, T, f"{base}/in")
    cum, cum_rows, pooled = v("cumsum"), v("cumsum_rows"), v("running_max")
    graph.nodes += [
        gs.Node("CumSum", f"{base}/cumsum", inputs=[steps, const(f"{base}/axis0", 0)], outputs=[cum]),
        gs.Node("Reshape", f"{base}/cumsum_rows", inputs=[cum, x_shape], outputs=[cum_rows]),
        gs.Node(node.op, f"{base}/pool", attrs=dict(node.attrs), inputs=[cum_rows], outputs=[pooled]),
    ]
    m, m_shape = to_steps(graph, pooled, T, f"{base}/out")
    prev, first, zero, shifted, diff = v("max_prev"), v("max_first"), v("max_zero"), v("max_shifted"), v("max_diff")
    axis0 = const(f"{base}/axes0", [0])
    graph.nodes += [
        gs.Node("Slice", f"{base}/max_prev", inputs=[m, const(f"{base}/p0", [0]),
                                                       const(f"{base}/p1", [T - 1]), axis0], outputs=[prev]),
        gs.Node("Slice", f"{base}/max_first", inputs=[m, const(f"{base}/f0", [0]),
                                                        const(f"{base}/f1", [1]), axis0], outputs=[first]),
        gs.Node("Sub", f"{base}/max_zero", inputs=[first, first], outputs=[zero]),
        gs.Node("Concat", f"{base}/max_shifted", attrs={"axis": 0}, inputs=[zero, prev], outputs=[shifted]),
        gs.Node("Sub", f"{base}/max_diff", inputs=[m, shifted], outputs=[diff]),
        gs.Node("Reshape", f"{base}/spikes", inputs=[diff, m_shape], outputs=[y]),
    ]
    node.inputs.clear()
    node.outputs.clear()


def _stepwise_pool(graph: gs.Graph, node: gs.Node) -> None:
    """One step with explicit state: C = count + x; M = maxpool(C); y = M - max; the graph inputs
    ``<pool>/count`` and ``<pool>/max`` (0 before the first step) become ``..._next`` outputs."""
    base, x, y = node.name, node.inputs[0], node.outputs[0]
    count, running = gs.Variable(f"{base}/count", dtype=x.dtype), gs.Variable(f"{base}/max", dtype=x.dtype)
    count_next = gs.Variable(f"{base}/count_next", dtype=x.dtype)
    max_next = gs.Variable(f"{base}/max_next", dtype=x.dtype)
    graph.inputs += [count, running]
    graph.outputs += [count_next, max_next]
    graph.nodes += [
        gs.Node("Add", f"{base}/accumulate", inputs=[count, x], outputs=[count_next]),
        gs.Node(node.op, f"{base}/pool", attrs=dict(node.attrs), inputs=[count_next], outputs=[max_next]),
        gs.Node("Sub", f"{base}/spikes", inputs=[max_next, running], outputs=[y]),
    ]
    node.inputs.clear()
    node.outputs.clear()
