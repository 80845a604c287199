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

import numpy as np
import onnx_graphsurgeon as gs

from .time_axis import INT64_MAX, const, to_steps


def spiking_max_pool(graph: gs.Graph, node: gs.Node, T: int, stateful: bool = False) -> dict[str, str]:
    """Rewrite the MaxPool/GlobalMaxPool ``node`` (input: T*B rows, time-major) in place; returns
    its state pairs (``stateful``: the T steps continue a run, see :func:`_stateful_pool`)."""
    if stateful:
        return _stateful_pool(graph, node, T)
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
    return {}


def _stateful_pool(graph: gs.Graph, node: gs.Node, T: int) -> dict[str, str]:
    """T steps that continue a run, the state explicit: graph inputs ``<pool>/count`` (C before
    the first of these steps) and ``<pool>/max`` (maxpool of it), 0 at the start of a run::

        C = CumSum([count; x_0; ...; x_{T-1}])[1:] ;  M = maxpool(C) ;  Y = M - [max; M_0 .. M_{T-2}]

    and outputs ``..._next`` = the last C and M. The sums are those of the whole run's CumSum, in
    the same order (count + x_0 first), so a run in chunks of steps gives the same spikes."""
    base, x, y = node.name, node.inputs[0], node.outputs[0]
    v = lambda s: gs.Variable(f"{base}/{s}", dtype=x.dtype)  # noqa: E731
    count, running = v("count"), v("max")
    steps, x_shape = to_steps(graph, x, T, f"{base}/in")
    start, first_max = v("count_step"), v("max_step")
    joined, cum, cum_steps, cum_rows, pooled = v("count_and_x"), v("cumsum_all"), v("cumsum"), v("cumsum_rows"), \
        v("running_max")
    axis0 = const(f"{base}/axes0", [0])
    graph.nodes += [
        gs.Node("Expand", f"{base}/count_step", inputs=[count, _one_step_shape(graph, steps, f"{base}/in")],
                outputs=[start]),
        gs.Node("Concat", f"{base}/count_and_x", attrs={"axis": 0}, inputs=[start, steps], outputs=[joined]),
        gs.Node("CumSum", f"{base}/cumsum_all", inputs=[joined, const(f"{base}/axis0", 0)], outputs=[cum]),
        gs.Node("Slice", f"{base}/cumsum", inputs=[cum, const(f"{base}/c0", [1]), const(f"{base}/c1", [T + 1]), axis0],
                outputs=[cum_steps]),
        gs.Node("Reshape", f"{base}/cumsum_rows", inputs=[cum_steps, x_shape], outputs=[cum_rows]),
        gs.Node(node.op, f"{base}/pool", attrs=dict(node.attrs), inputs=[cum_rows], outputs=[pooled]),
    ]
    m, m_shape = to_steps(graph, pooled, T, f"{base}/out")
    prev, shifted, diff, count_next, max_next = v("max_prev"), v("max_shifted"), v("max_diff"), v("count_next"), \
        v("max_next")
    graph.nodes += [
        gs.Node("Expand", f"{base}/max_step", inputs=[running, _one_step_shape(graph, m, f"{base}/out")],
                outputs=[first_max]),
        gs.Node("Slice", f"{base}/max_prev", inputs=[m, const(f"{base}/p0", [0]), const(f"{base}/p1", [T - 1]), axis0],
                outputs=[prev]),
        gs.Node("Concat", f"{base}/max_shifted", attrs={"axis": 0}, inputs=[first_max, prev], outputs=[shifted]),
        gs.Node("Sub", f"{base}/max_diff", inputs=[m, shifted], outputs=[diff]),
        gs.Node("Reshape", f"{base}/spikes", inputs=[diff, m_shape], outputs=[y]),
        gs.Node("Gather", f"{base}/count_next", attrs={"axis": 0}, inputs=[cum, const(f"{base}/last_c", T)],
                outputs=[count_next]),
        gs.Node("Gather", f"{base}/max_next", attrs={"axis": 0}, inputs=[m, const(f"{base}/last_m", T - 1)],
                outputs=[max_next]),
    ]
    graph.inputs += [count, running]
    graph.outputs += [count_next, max_next]
    node.inputs.clear()
    node.outputs.clear()
    return {count.name: count_next.name, running.name: max_next.name}


def _one_step_shape(graph: gs.Graph, steps: gs.Variable, base: str) -> gs.Variable:
    """[1, B, ...] for ``steps`` [T, B, ...]: the shape a state (0, or [B, ...]) is expanded to."""
    shape, rest, out = (gs.Variable(f"{base}/{s}", dtype=np.int64) for s in ("all_shape", "step_rest", "one_step"))
    graph.nodes += [
        gs.Node("Shape", f"{base}/all_shape", inputs=[steps], outputs=[shape]),
        gs.Node("Slice", f"{base}/step_rest", outputs=[rest],
                inputs=[shape, const(f"{base}/r0", [1]), const(f"{base}/r1", [INT64_MAX])]),
        gs.Node("Concat", f"{base}/one_step", attrs={"axis": 0}, inputs=[const(f"{base}/one", [1]), rest],
                outputs=[out]),
    ]
    return out
