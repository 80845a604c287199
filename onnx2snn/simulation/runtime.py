"""Execution with onnxruntime: sessions, batched runs, exposing intermediate tensors.

A converted model is an ordinary ONNX model: its IFNeuron nodes carry the whole time loop (T steps
stacked time-major on axis 0), so one ``run()`` maps an ANN input batch [B, ...] to the SNN output
averaged over T. Stock onnxruntime runs the file as it is (the IFNeuron function body); our
sessions run it lowered to standard ops in the ``auto`` form of :mod:`.export.unrolled` (a Scan over
the steps of large layers) -- the same operations in the same order, identical outputs, less copying.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from ..config import Config
from ..data import Dataset, as_dataset
from ..graph import weights
from ..ops import if_neuron
from ..progress import progress
from ..snn.unrolled import unroll
from .budget import SAFETY, SNN_SAFETY, Budget, RunSize
from .footprint import footprint


def make_session(model: onnx.ModelProto, config: Config, optimize: bool = True,
                 spin: bool = True) -> ort.InferenceSession:
    """An onnxruntime session for ``model`` with the configured threads and providers.

    ``spin=False``: worker threads sleep instead of spinning after a run -- for sessions that
    alternate with other sessions (phase 2), whose idle spinning would take the cores they need.
    A model with IFNeuron nodes runs lowered (``unroll(model, "auto")``, see the module docstring).
    Memory: the weights of a light model (:mod:`onnx2snn.graph.weights`) are handed over in place, not copied.
    Memory patterns are off (they keep a block per input shape). All sessions share one arena that
    grows by exactly what a run asks (:func:`shared_arena`) and is reused by the next runs without
    page faults; :func:`release_memory` returns its free part between stages. (Per-session arenas
    growing by powers of two held 1.8x the run's tensors after runs of unequal sizes; with no
    arena, DenseNet-121 at T = 8 ran 1.6x slower.)
    The priority-based execution order keeps to the graph's topological order, which is what the
    budget's liveness assumes; onnxruntime's default order ran DenseNet-121's spike counters after
    the whole network, keeping every spike train alive (1,068 MiB instead of 277 MiB at T = 8, B = 2)."""
    if if_neuron.time_steps(model) is not None:
        model = unroll(model, "auto")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_mem_pattern = False
    if shared_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED  # the graph's order: see below
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if config.threads:
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    providers = list(config.providers) if config.providers else default_providers()
    model, temporary = weights.serializable(model)
    names, arrays = weights.external(model)
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
    if names:
        options.add_external_initializers(names, values)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    session._onnx2snn_weights = (values, arrays, temporary)  # onnxruntime reads them in place
    return session


_ARENA: list = []  # [registered?] once decided; the releasing session after it


def shared_arena() -> bool:
    """Register (once per process) the CPU arena all onnx2snn sessions share: it extends by
    exactly the size a run requests (no power-of-two growth), and its free memory is returned by
    :func:`release_memory`. False when it cannot be registered (e.g. the host process registered
    its own): sessions then keep their own arenas."""
    if not _ARENA:
        try:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))  # 1: kSameAsRequested
            _ARENA.append(True)
        except Exception:  # noqa: BLE001 - any refusal leaves the default per-session arenas
            _ARENA.append(False)
    return _ARENA[0]


def release_memory() -> None:
    """Return the shared arena's free memory to the system: at the end of a stage, whose runs the
    next stage's may not match (a run of a tiny session with onnxruntime's arena-shrink option)."""
    if not shared_arena():
        return
    if len(_ARENA) == 1:
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "release",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.add_session_config_entry("session.use_env_allocators", "1")
        run_options = ort.RunOptions()
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        _ARENA.append((ort.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"]), run_options))
    session, run_options = _ARENA[1]
    session.run(None, {"x": np.zeros(1, np.float32)}, run_options)


def default_providers() -> list[str]:
    """What this onnxruntime build offers, in its order of preference (CUDA/TensorRT/... before
    CPU when present); the remote-inference Azure provider is left out."""
    return [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]


def expose(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` with the tensors ``names`` added as graph outputs (float type unless
    shape inference says otherwise)."""
    out = weights.copy_model(model)
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(helper.make_tensor_value_info(name, types.get(name, TensorProto.FLOAT), None))
            present.add(name)
    return out


def add_spike_counters(snn: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, tuple[str, str]]]:
    """A copy of ``snn`` with two outputs per IFNeuron: its spike count per row of the spike train
    (``[T*B]``, float, exact below 2^24 neurons per sample) and its number of neuron-steps (elements
    of the spike train). The counting nodes follow their IF node, so onnxruntime runs them while
    the spike train is alive anyway (appended at the end, they kept every train alive to the end).

    Returns the model and ``{IF node name: (count output, size output)}``.
    """
    out = weights.copy_model(snn)
    counters, nodes = {}, []
    for node in out.graph.node:
        nodes.append(node)
        if not if_neuron.is_if_neuron(node):
            continue
        base, spikes = node.name, node.output[0]
        count, size = f"{base}/spike_count", f"{base}/neuron_steps"
        nodes += [
            helper.make_node("Greater", [spikes, f"{base}/zero"], [f"{base}/fired"], name=f"{base}/fired"),
            helper.make_node("Cast", [f"{base}/fired"], [f"{base}/fired_f"], name=f"{base}/cast",
                             to=TensorProto.FLOAT),
            helper.make_node("Reshape", [f"{base}/fired_f", f"{base}/rows"], [f"{base}/fired_rows"],
                             name=f"{base}/fired_rows"),
            helper.make_node("ReduceSum", [f"{base}/fired_rows", f"{base}/axis1"], [count], name=f"{base}/count",
                             keepdims=0),
            helper.make_node("Size", [spikes], [size], name=f"{base}/size"),
        ]
        out.graph.initializer.extend([helper.make_tensor(f"{base}/zero", _elem_type(snn, spikes), [], [0]),
                                      helper.make_tensor(f"{base}/rows", TensorProto.INT64, [2], [0, -1]),
                                      helper.make_tensor(f"{base}/axis1", TensorProto.INT64, [1], [1])])
        out.graph.output.extend([helper.make_tensor_value_info(count, TensorProto.FLOAT, ["rows"]),
                                 helper.make_tensor_value_info(size, TensorProto.INT64, [])])
        counters[node.name] = (count, size)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, counters


def _elem_type(model: onnx.ModelProto, name: str) -> int:
    for v in list(model.graph.value_info) + list(model.graph.output):
        if v.name == name and v.type.tensor_type.elem_type:
            return v.type.tensor_type.elem_type
    return TensorProto.FLOAT


def run_batches(session: ort.InferenceSession, data: Dataset, batch_size: int,
                outputs: Sequence[str] | None = None, desc: str = "") -> Iterator[tuple[slice, dict]]:
    """Run ``session`` over ``data`` in batches; yields ``(sample slice, {output name: array})``.
    The dict is emptied before the next batch runs: a batch's outputs are not kept alive during
    the next run (keep what you need by taking it out of the dict)."""
    names = list(outputs) if outputs is not None else [o.name for o in session.get_outputs()]
    batches = data.batches(batch_size)
    for part, feed in progress(batches, total=-(-len(data) // batch_size), desc=desc):
        values = dict(zip(names, session.run(names, feed)))
        yield part, values
        values.clear()


def plan_runs(budget: Budget, stage: str, model: onnx.ModelProto, outputs: Sequence[str], samples: int,
              config: Config, held: int = 0, extra: int = 0, spikes: frozenset = frozenset(),
              chunkable: bool = False) -> RunSize:
    """The run size for ``model`` (an ANN, or an SNN at its T) computing ``outputs`` on
    ``samples`` samples: its footprint (:func:`.footprint.footprint`) plus ``extra`` bytes per sample
    the caller holds per sample of a run, within the budget less ``held`` and the session's own
    copy of the weights (onnxruntime's packed and re-laid-out weights)."""
    steps = if_neuron.time_steps(model) or 1
    fp = footprint(model, list(outputs), steps, spikes)
    if extra:
        fp = fp.plus(static=extra)
    return budget.run_size(stage, fp, samples, steps, config.batch_size, held + weights.weight_bytes(model),
                           chunkable, SNN_SAFETY if steps > 1 else SAFETY)


def run(model: onnx.ModelProto, data: Dataset, config: Config, outputs: Sequence[str] | None = None,
        desc: str = "", budget: Budget | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` on all of ``data`` in runs sized by ``budget`` (default: ``config``'s);
    returns each output concatenated over the runs."""
    names = list(outputs) if outputs is not None else [o.name for o in model.graph.output]
    budget = budget or Budget(config.memory_limit)
    size = plan_runs(budget, desc or "run", model, names, len(data), config)
    session = make_session(model, config)
    chunks: dict[str, list] = {n: [] for n in names}
    T, timed = if_neuron.time_steps(model) or 1, set()
    for part, values in run_batches(session, data, size.samples, names, desc):
        samples = part.stop - part.start
        for n in names:
            value = values[n]
            if T > 1 and isinstance(value, np.ndarray) and value.ndim and value.shape[0] == T * samples:
                timed.add(n)  # a time-major output ([T * b, ...]: an exposed spike train)
                value = value.reshape(T, samples, *value.shape[1:])
            chunks[n].append(value)
    del session
    release_memory()
    return {n: _join(v, time_major=n in timed) for n, v in chunks.items()}


def _join(parts: list, time_major: bool = False):
    """Batches of one output joined: arrays on axis 0 (time-major ones, [T, b, ...] per run, on the
    samples' axis and back to [T * N, ...]), scalars stacked, sequences (ZipMap) chained."""
    if isinstance(parts[0], list):
        return [item for part in parts for item in part]
    if time_major:
        joined = np.concatenate(parts, axis=1)
        return joined.reshape(-1, *joined.shape[2:])
    return np.concatenate(parts) if parts[0].ndim else np.asarray(parts)


def simulate(model: onnx.ModelProto, inputs, config: Config | None = None) -> dict[str, np.ndarray]:
    """Run a converted (or any) model on ``inputs`` -- an array for a single-input model, a dict
    by input name, or a Dataset -- in runs sized by ``config.memory_limit``; returns every output
    by name."""
    config = config or Config()
    data = as_dataset(inputs, model, "inputs")
    return run(model, data, config, budget=Budget(config.memory_limit))
