"""IF simulation for phase 2: spike counts (and spikes) of one layer, in onnxruntime.

The kernel graph is built from the IFNeuron function's own step (:func:`.ops.if_neuron.step_nodes`),
so it performs the same float operations in the same order and gives the same spikes as the
converted model::

    x_t <- x_t + b                  (only with a phase-2 bias current b, as the converted Add)
    u_t = v_{t-1} + x_t ;  f_t = [u_t >= theta] ;  v_t = u_t - theta * f_t ;  v_{-1} = v0

and returns ``C = sum_t f_t`` (float, exact for T < 2^24) and, when asked, ``F`` = the booleans
f_t stacked time-major [T*B, ...]. Unlike the converted model it takes the T steps as T inputs
(views of one array, no split copy), a constant current (direct encoding) as one input used at
every step, and never materialises theta * f as a [T*B, ...] train: about half the memory traffic
of running IFNeuron and counting its output.

The search's kernel (:meth:`IFKernel.sse`) runs the same steps but returns only the squared error
of the rates, summed over the samples, per neuron: ``sum_samples (theta C / T - a)^2``. It does not
count spikes step by step: with reset by subtraction the final potential holds the count,
``v_T = v0 + X - theta C`` with ``X = sum_t x_t`` (+ ``T b``), so ``C = round((v0 + X - v_T) / theta)``.
That is exact while the float error of the T additions, below ``2 T |u|max 2^-24``, stays under
``theta / 2``: for potentials under ``2^22 / T`` thresholds in size. It saves one of the six ops of
each step and moves the error's sums out of numpy.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..config import Config
from ..ops import if_neuron
from ..simulation.runtime import make_session


def _steps(T: int, constant: bool, bias: bool, count: bool, opset: int,
           reset: str = "subtract") -> tuple[list, list[str], str]:
    """Nodes of the T IF steps on inputs ``x0`` .. (``x0`` alone when ``constant``) plus ``bias``;
    with ``count`` a running spike count ``C``. Returns (nodes, current inputs, last potential)."""
    steps = ["x0"] * T if constant else [f"x{t}" for t in range(T)]
    nodes, inputs = [], sorted(set(steps), key=lambda n: int(n[1:]))
    if bias:
        nodes += [helper.make_node("Add", [x, "bias"], [f"{x}b"]) for x in inputs]
        steps = [f"{x}b" for x in steps]
    v = "v0"
    for t, x in enumerate(steps):
        nodes += if_neuron.step_nodes(t, v, x, opset, reset=reset)
        v = f"m{t}"
        if count and t:  # running: each step's count is freed at once (a T-input Sum kept all T alive)
            total = "C" if t == T - 1 else f"C{t}"
            nodes.append(helper.make_node("Add", ["c0" if t == 1 else f"C{t - 1}", f"c{t}"], [total]))
    if count and T == 1:
        nodes.append(helper.make_node("Identity", ["c0"], ["C"]))
    return nodes, inputs, v


def _model(nodes, inputs: list[str], outputs: list[tuple[str, int]], opset: int, initializers=()):
    graph = helper.make_graph(nodes, "if_kernel", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                                                   for n in inputs],
                              [helper.make_tensor_value_info(n, t, None) for n, t in outputs], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def kernel_model(T: int, constant: bool, bias: bool, keep: bool, opset: int = 17,
                 reset: str = "subtract") -> onnx.ModelProto:
    """Inputs ``x0`` .. ``x{T-1}`` (or only ``x0`` when ``constant``), ``threshold``, ``v0`` and
    (with ``bias``) ``bias``; outputs ``C``, ``V`` (the potential after the last step, from which a
    run in chunks of steps continues) and (with ``keep``) ``F``. Dynamic shapes."""
    nodes, inputs, v = _steps(T, constant, bias, True, opset, reset)
    nodes.append(helper.make_node("Identity", [v], ["V"]))
    outputs = [("C", TensorProto.FLOAT), ("V", TensorProto.FLOAT)]
    if keep:
        nodes.append(helper.make_node("Concat", [f"f{t}" for t in range(T)], ["F"], axis=0))
        outputs.append(("F", TensorProto.BOOL))
    return _model(nodes, inputs + ["threshold", "v0"] + (["bias"] if bias else []), outputs, opset)


def sse_model(T: int, constant: bool, bias: bool, opset: int = 17, reset: str = "subtract") -> onnx.ModelProto:
    """Inputs as :func:`kernel_model` plus ``total`` (X, the sum of the T currents without the
    bias, [B, n]) and ``target`` (a, [B, n]); output ``E`` [n] = sum over B of (theta C / T - a)^2
    with C = round((v0 + X + T b - v_T) / theta) (module docstring), or, for neurons that reset to
    zero (the final potential does not hold the count), C counted step by step."""
    counted = reset != "subtract"
    nodes, inputs, v = _steps(T, constant, bias, counted, opset, reset)
    start = "v0"
    if bias and not counted:
        nodes += [helper.make_node("Mul", ["bias", "T"], ["Tb"]), helper.make_node("Add", ["v0", "Tb"], ["v0b"])]
        start = "v0b"
    if not counted:
        nodes += [helper.make_node("Add", [start, "total"], ["q"]), helper.make_node("Sub", ["q", v], ["charge"]),
                  helper.make_node("Div", ["charge", "threshold"], ["ratio"]),
                  helper.make_node("Round", ["ratio"], ["C"])]
    nodes += [helper.make_node("Div", ["threshold", "T"], ["unit"]), helper.make_node("Mul", ["C", "unit"], ["r"]),
              helper.make_node("Sub", ["r", "target"], ["d"]),
              helper.make_node("ReduceSumSquare", ["d"], ["E"], axes=[0], keepdims=0)]
    names = inputs + ["threshold", "v0"] + (["bias"] if bias else []) + ["total", "target"]
    return _model(nodes, names, [("E", TensorProto.FLOAT)], opset,
                  [helper.make_tensor("T", TensorProto.FLOAT, [], [float(T)])])


def workers(config: Config) -> int:
    """Threads for independent kernel runs: ``config.threads``, else the CPUs this process may use."""
    if config.threads:
        return config.threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class IFKernel:
    """Sessions of :func:`kernel_model` and :func:`sse_model` for one T, built when first needed.

    :meth:`sse` runs its candidates side by side, one per worker thread (``config.threads``, else
    every CPU), each on a single-threaded session; onnxruntime releases the GIL while it runs. One
    session with an intra-op pool gains little on the search set's small tensors: its sleeping
    threads are woken for every op, which costs about what a second thread gains. :meth:`run` keeps
    the intra-op pool: on its larger tensors, batches side by side were no faster (tried, not kept;
    docs/phase2_cost.md). Use it as a context manager, or :meth:`close` it, to stop the
    threads."""

    def __init__(self, T: int, config: Config):
        self.T, self.config, self._sessions = T, config, {}
        self.reset = config.profile.reset
        self._lock, self.workers = threading.Lock(), workers(config)
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def __enter__(self) -> "IFKernel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def run(self, current: np.ndarray, theta, v0, bias=None, keep: bool = False, steps: int | None = None,
            potential: bool = False):
        """Spike counts [B, ...] of IF neurons driven by ``current`` ([steps, B, ...], or [1, B, ...]
        for a current that is the same at every step) plus ``bias`` at every step, from potential
        ``v0``, over ``steps`` steps (default T), and (``keep``) the spikes as booleans
        [steps*B, ...], else None; with ``potential`` also the potential after the last step."""
        steps = steps or self.T
        session = self._session("run", current, bias is not None, keep=keep, steps=steps)
        names = ["C", "F"] if keep else ["C"]
        outs = session.run(names + (["V"] if potential else []), self._feeds(current, theta, v0, bias))
        result = (outs[0], outs[1] if keep else None)
        return result + (outs[-1],) if potential else result

    def release(self) -> None:
        """Drop the sessions of :meth:`run` (and their arenas, sized by the last layer's runs)."""
        with self._lock:
            self._sessions = {k: v for k, v in self._sessions.items() if k[0] != "run"}

    def total(self, current: np.ndarray) -> np.ndarray:
        """X = the sum over the T steps of ``current`` as in :meth:`run` (a one-step current counts
        T times): the ``total`` that :meth:`sse` takes."""
        return current.sum(axis=0) if current.shape[0] == self.T else self.T * current[0]

    def sse(self, current: np.ndarray, total: np.ndarray, target: np.ndarray, candidates) -> list[np.ndarray]:
        """For each candidate (theta, v0, bias or None), per neuron, the sum over the B samples of
        (rate - target)^2, rate = theta * count / T, for ``current`` as in :meth:`run` ([steps, B,
        n]), its :meth:`total` and ``target`` [B, n] (float32 sums). ``total`` is passed in so
        that a caller scoring many candidates on one current sums it once."""
        current = np.ascontiguousarray(current, np.float32)
        extra = {"total": np.asarray(total, np.float32), "target": np.asarray(target, np.float32)}

        def one(candidate) -> np.ndarray:
            theta, v0, bias = candidate
            session = self._session("sse", current, bias is not None, threads=1)
            return session.run(["E"], self._feeds(current, theta, v0, bias) | extra)[0]

        candidates = list(candidates)
        if self._pool is None or len(candidates) == 1:
            return [one(c) for c in candidates]
        return list(self._pool.map(one, candidates))

    def _session(self, kind: str, current: np.ndarray, bias: bool, keep: bool = False,
                 threads: int | None = None, steps: int | None = None):
        """The session of :func:`kernel_model` (``kind`` "run") or :func:`sse_model` ("sse"), built
        once per kind, steps, constant current, bias, keep and thread count (None: the configured
        ones)."""
        steps = steps or self.T
        constant = current.shape[0] == 1 and steps > 1
        key = (kind, steps, constant, bias, keep, threads)
        with self._lock:
            if key not in self._sessions:
                model = (kernel_model(steps, constant, bias, keep, reset=self.reset) if kind == "run"
                         else sse_model(steps, constant, bias, reset=self.reset))
                config = dataclasses.replace(self.config, threads=threads) if threads else self.config
                self._sessions[key] = make_session(model, config, spin=False)
            return self._sessions[key]

    @staticmethod
    def _feeds(current: np.ndarray, theta, v0, bias) -> dict[str, np.ndarray]:
        current = np.ascontiguousarray(current, np.float32)
        feeds = {f"x{t}": current[t] for t in range(current.shape[0])}
        feeds.update(threshold=np.asarray(theta, np.float32), v0=np.asarray(v0, np.float32))
        if bias is not None:
            feeds["bias"] = np.asarray(bias, np.float32)
        return feeds
