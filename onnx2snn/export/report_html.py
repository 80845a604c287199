"""``--report DIR``: a self-contained HTML page with PNG plots of one conversion (matplotlib, an
optional extra: ``pip install 'onnx2snn[report]'``).

Plots: accuracy (or agreement) vs T for ANN and SNN; firing rate per layer; phase-1 vs phase-2
error per layer; thresholds per layer (per-channel spread); MACs/SOPs and the energy estimate of
:mod:`onnx2snn.energy`. A new DIR is built in a temporary folder beside it and renamed into place
when complete; into an existing DIR every file is written atomically, index.html last.
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import shutil
import tempfile
from pathlib import Path

from ..energy import PJ_PER_AC, PJ_PER_MAC
from ..errors import ConfigError, OutputError
from .files import atomic_write, output_folder


def import_pyplot():
    """matplotlib's pyplot (Agg backend), or a ConfigError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--report needs matplotlib: pip install 'onnx2snn[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_report(summary: dict, folder: str | os.PathLike) -> Path:
    """Write ``folder``/index.html and its PNGs for a conversion ``summary`` (``report.summary``);
    parts the summary lacks (an energy estimate that could not be made) are left out, and its
    warnings are listed."""
    plt = import_pyplot()
    energy = summary.get("energy")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"report folder '{folder}' is a file; choose a folder name for --report")
    parent = output_folder(folder, "--report")
    files = {name: _png(plt, fig) for name, fig in _figures(plt, summary, energy)}
    files["index.html"] = _page(summary, energy, [n for n in files]).encode()
    if folder.is_dir():
        for name, data in files.items():  # index.html is last
            with atomic_write(folder / name) as handle:
                handle.write(data)
        return folder
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write in '{parent}' ({exc.strerror}); choose a writable --report") from None
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.chmod(tmp, 0o755)
        os.rename(tmp, folder)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return folder


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _figures(plt, s: dict, energy: dict):
    layers = s["layers"]
    names = [layer["name"] for layer in layers]
    short = [n if len(n) <= 22 else "…" + n[-21:] for n in names]
    yield "accuracy_vs_T.png", _accuracy_figure(plt, s)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(range(len(names)), [layer["firing_rate"] or 0 for layer in layers], color="tab:orange")
    ax.set(title=f"Firing rate per spiking layer (T={s['T']})", ylabel="spikes / (neuron x step)")
    _names(ax, short)
    yield "firing_rates.png", fig
    if any("mse_phase1" in layer for layer in layers):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [layer.get("mse_phase1", 0) for layer in layers], 0.4, label="phase 1")
        ax.bar([x + 0.2 for x in xs], [layer.get("mse_phase2", 0) for layer in layers], 0.4, label="phase 2")
        ax.set(title="Per-layer error ||rate - ANN activation||² (mean, search set)", yscale="log")
        ax.legend()
        _names(ax, short)
        yield "layer_error.png", fig
    fig, ax = plt.subplots(figsize=(7, 3.2))
    values = [layer.get("threshold_per_channel", [layer["threshold"]]) for layer in layers]
    ax.boxplot(values)
    ax.set(title="Thresholds per layer (spread over channels)", ylabel="threshold θ")
    ax.set_xticks(range(1, len(names) + 1), short, rotation=30, ha="right", fontsize=7)
    yield "thresholds.png", fig
    if not energy:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    a1.bar(["ANN MACs", "SNN MACs", "SNN SOPs"], [energy['ann_macs'], energy['snn_macs'], energy['snn_sops']],
           color=["tab:blue", "tab:blue", "tab:orange"])
    a1.set(title="Operations per sample", yscale="log")
    a2.bar(["ANN", "SNN"], [energy['ann_uj'], energy['snn_uj']], color=["tab:blue", "tab:orange"])
    a2.set(title="Energy estimate per sample (45 nm)", ylabel="µJ")
    yield "energy.png", fig


def _accuracy_figure(plt, s: dict):
    points = {r["T"]: r for r in s["sweep"]}
    points.setdefault(s["T"], {"snn_accuracy": s["snn_accuracy"], "agreement": s["agreement"]})
    use_acc = s["ann_accuracy"] is not None
    key = "snn_accuracy" if use_acc else "agreement"
    Ts = sorted(t for t, r in points.items() if r.get(key) is not None)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(Ts, [100 * points[t][key] for t in Ts], "o-", color="tab:orange", label="SNN")
    if use_acc:
        ax.axhline(100 * s["ann_accuracy"], color="tab:blue", ls="--", label="ANN")
    ax.set(xscale="log", xlabel="time steps T", ylabel="accuracy %" if use_acc else "agreement with ANN %",
           title="Accuracy vs T" if use_acc else "Agreement with the ANN vs T")
    if Ts:
        ax.set_xticks(Ts, [str(t) for t in Ts])
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _names(ax, short):
    ax.set_xticks(range(len(short)), short, rotation=30, ha="right", fontsize=7)


def _rate(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _page(s: dict, energy: dict | None, images: list[str]) -> str:
    esc = lambda v: html.escape(str(v))  # noqa: E731
    pct = lambda v: "-" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    num = lambda key: "-" if not energy else f"{energy[key]:.4g}"  # noqa: E731
    sops = (energy or {}).get("sops_by_layer", {})
    rows = "".join(
        f"<tr><td>{esc(layer['name'])}</td><td>{layer['threshold']:.4g}</td>"
        f"<td>{_rate(layer['firing_rate'])}</td>"
        f"<td>{layer.get('mse_phase1', float('nan')):.3g}</td><td>{layer.get('mse_phase2', float('nan')):.3g}</td>"
        f"<td>{sops.get(layer['name'], float('nan')):.3g}</td></tr>" for layer in s["layers"])
    warnings = "".join(f"<li>{esc(w)}</li>" for w in s.get("warnings", []))
    warnings = f"<p><b>Warnings</b></p><ul>{warnings}</ul>" if warnings else ""
    sweep = "".join(f"<tr><td>{r['T']}</td><td>{pct(r['snn_accuracy'])}</td><td>{pct(r['agreement'])}</td></tr>"
                    for r in s["sweep"])
    imgs = "".join(f'<p><img src="{esc(n)}" alt="{esc(n)}"></p>' for n in images)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>onnx2snn report: {esc(s['model'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:2px 8px;text-align:right}}
td:first-child{{text-align:left}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f3f3f3}}</style>
</head><body><h1>onnx2snn conversion report</h1>
<p>Model <b>{esc(s['model'])}</b> &rarr; SNN with T = {s['T']} ({esc(s['method'])}, phase {s['phase']}),
written to {esc(s['output'])}; {s['calibration_samples']} calibration samples, evaluated on {s['samples']} samples
of {esc(s['data'])}; onnx2snn {esc(s['version'])}, {s['seconds']:.1f} s.</p>
<table><tr><th></th><th>ANN</th><th>SNN</th></tr>
<tr><td>accuracy</td><td>{pct(s['ann_accuracy'])}</td><td>{pct(s['snn_accuracy'])}</td></tr>
<tr><td>agreement (SNN top-1 = ANN top-1)</td><td></td><td>{pct(s['agreement'])}</td></tr>
<tr><td>MACs per sample</td><td>{num('ann_macs')}</td><td>{num('snn_macs')}</td></tr>
<tr><td>SOPs per sample (from spikes)</td><td></td><td>{num('snn_sops')}</td></tr>
<tr><td>energy per sample (µJ)</td><td>{num('ann_uj')}</td><td>{num('snn_uj')}</td></tr></table>{warnings}
<p>Energy: {PJ_PER_MAC} pJ per MAC and {PJ_PER_AC} pJ per accumulate (45 nm CMOS figures, Horowitz 2014);
arithmetic only, memory traffic left out. The SNN pays MACs only in the first layer (constant input).</p>
<h2>Accuracy vs T</h2><table><tr><th>T</th><th>SNN accuracy</th><th>agreement</th></tr>{sweep}</table>
<h2>Layers</h2><table><tr><th>layer</th><th>threshold</th><th>firing rate</th><th>MSE phase 1</th>
<th>MSE phase 2</th><th>SOPs</th></tr>{rows}</table><h2>Plots</h2>{imgs}</body></html>
"""
