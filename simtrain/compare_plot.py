"""The val-loss curves of a comparison as a PNG: per variant the mean over seeds and its min-max band.

Drawn on a bare matplotlib ``Figure`` (the Agg canvas, no pyplot), so a server thread can draw it without
a display or shared figure state; it needs no torch, so the gateway draws it on request.
"""

from __future__ import annotations

import io
import math
import statistics

from matplotlib.figure import Figure

from simtrain.compare import RunResult, bytes_per_token

COLOURS = ("#3b6ea8", "#d9822b", "#4f9d55", "#b5477a", "#7b62b8", "#8c6d3f", "#3a9fa5", "#777777")


def _mean_band(curves: list[dict[int, float]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps every curve evaluated at, with the mean, min and max loss there."""
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    values = [[c[s] for c in curves] for s in steps]
    return steps, [statistics.fmean(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def curves_png(runs: list[RunResult], title: str, unit: str = "nats") -> bytes:
    """The PNG: x is the optimizer step, y the val loss in the comparison's ``unit`` (nats per token, or
    bits per byte where the variants tokenize differently), one colour per variant."""
    fig = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    by_variant: dict[str, list[dict[int, float]]] = {}
    for run in runs:
        scale = 1.0
        if unit == "bits per byte":
            scale = 1 / math.log(2) / (bytes_per_token(run) or math.nan)
        curve = {s: v * scale for s, v in run.val_curve if math.isfinite(v * scale)}
        by_variant.setdefault(run.variant, [])
        if run.status == "succeeded" and curve:
            by_variant[run.variant].append(curve)
    for i, (name, curves) in enumerate(by_variant.items()):
        colour = COLOURS[i % len(COLOURS)]
        steps, mean, low, high = _mean_band(curves)
        if not steps:
            ax.plot([], [], color=colour, label=f"{name} (no val loss)")
            continue
        ax.plot(steps, mean, color=colour, marker="o", markersize=3, label=f"{name} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel("val loss (bits per byte)" if unit == "bits per byte" else "val loss (nats per token)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    if ax.lines:
        fig.legend(loc="outside right upper", fontsize=9)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
