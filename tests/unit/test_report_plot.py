"""The PNG of the loss curves: labelled axes, and a legend that stays off the curves."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg

from trainer_service.report.plot import curves_figure, save_curves

CURVES = {"train": [[s, 3.0 - s / 50] for s in range(0, 100, 10)], "val": [[0, 3.1], [50, 2.2], [100, 1.5]]}


def test_the_legend_sits_outside_the_plot_area() -> None:
    fig = curves_figure(CURVES, 3.87, "job x")
    canvas = FigureCanvasAgg(fig)  # what savefig renders through
    canvas.draw()
    renderer = canvas.get_renderer()
    (ax,) = fig.axes
    assert ax.get_xlabel() == "step" and ax.get_ylabel().startswith("loss (nats")
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["train (logged steps)", "val", "ln(vocab)"]
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_no_curve_still_saves_a_png(tmp_path: Path) -> None:
    path = save_curves(tmp_path / "report.png", {}, None, "nothing logged")
    assert path.read_bytes()[:4] == b"\x89PNG"
