"""The loss curves as a PNG saved beside report.json, drawn by matplotlib headless.

A bare ``Figure`` renders through the Agg canvas: no pyplot, so no display, no GUI toolkit and no global
figure state shared between threads.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

Curve = list[list[float]]
COLOURS = {"train": "#3b6ea8", "train_eval": "#8fb3dc", "val": "#d9822b"}
LABELS = {"train": "train (logged steps)", "train_eval": "train (evaluation)", "val": "val"}


def _finite(points: Curve) -> Curve:
    return [p for p in points if p[1] is not None and math.isfinite(p[1])]


def save_curves(path: Path, curves: dict[str, Curve], ln_vocab: float | None, title: str) -> Path:
    """Train and val loss against step, with ln(vocab) (the loss of a uniform guess) for reference."""
    fig = curves_figure(curves, ln_vocab, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path


def curves_figure(curves: dict[str, Curve], ln_vocab: float | None, title: str) -> Figure:
    """The figure :func:`save_curves` saves."""
    # Constrained layout makes room for the legend outside the axes, so it never covers a curve.
    fig = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    for name in ("train", "train_eval", "val"):
        points = _finite(curves.get(name) or [])
        if points:
            steps, losses = zip(*points, strict=True)
            marker = "o" if name != "train" or len(points) < 20 else None
            ax.plot(steps, losses, label=LABELS[name], color=COLOURS[name], marker=marker, markersize=3)
    if ln_vocab:
        ax.axhline(ln_vocab, color="#999999", linestyle="--", linewidth=1, label="ln(vocab)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    if ax.lines:
        fig.legend(loc="outside right upper", fontsize=9)
    return fig
