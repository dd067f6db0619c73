"""A comparison for people: the verdict sentence, the ranking, and checks, data and spec side by side."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Table

from simtrain.cli.output import say

VERDICT_STYLE = {"fit": "green", "fit with warnings": "yellow", "not fit": "red"}
CHECK_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return ""
    return escape(value if isinstance(value, str) else json.dumps(value))


def _verdict(verdict: str | None) -> str:
    return f"[{VERDICT_STYLE.get(verdict or '', 'dim')}]{escape(verdict or 'no report')}[/]"


def ranking_table(comparison: dict[str, Any]) -> Table:
    unit = comparison["unit"]
    table = Table(
        "#", "variant", f"val loss ({unit})", "seeds", "accuracy", "verdict", "against the best", box=None
    )
    variants = {v["name"]: v for v in comparison["variants"]}
    for entry in comparison["ranking"]:
        v = variants[entry["variant"]]
        if entry["place"] is None:
            loss, versus = "—", f"[red]no loss: {escape(entry['why'])}[/]"
        else:
            spread = f" ± {entry['std']:.3f}" if entry["std"] is not None else ""
            loss = f"{entry['mean']:.4f}{spread}"
            behind = entry.get("behind_best")
            versus = "best" if behind is None else escape(behind["text"])
        accuracy = f"{v['accuracy']:.1%}" if v["accuracy"] is not None else ""
        table.add_row(
            str(entry["place"] or "—"),
            escape(v["name"]),
            loss,
            str(v["n"]),
            accuracy,
            _verdict(v["verdict"]),
            versus,
        )
    return table


def side_by_side(title: str, rows: dict[str, dict[str, Any]], names: list[str]) -> Table:
    table = Table(title, *map(escape, names), box=None, title_justify="left")
    for label, values in rows.items():
        table.add_row(escape(label), *(_number(values.get(n)) for n in names))
    return table


def checks_table(checks: list[dict[str, Any]], names: list[str]) -> Table:
    table = Table("check", *map(escape, names), box=None)
    for row in checks:
        cells = []
        for name in names:
            cell = row["variants"].get(name)
            if cell is None:
                cells.append("")
                continue
            worst, seeds = cell["worst"], sum(cell["counts"].values())
            count = f" {cell['counts'][worst]}/{seeds}" if cell["counts"].get(worst, 0) < seeds else ""
            cells.append(f"[{CHECK_STYLE.get(worst, 'dim')}]{escape(str(worst))}{count}[/]")
        table.add_row(escape(row.get("title") or row["name"]), *cells)
    return table


def show_comparison(comparison: dict[str, Any]) -> None:
    """Print it all: what to read first comes first."""
    names = [v["name"] for v in comparison["variants"]]
    say(f"[bold]{escape(comparison['summary'])}[/]")
    step = comparison["common_step"]
    if step is not None:
        say(
            f"final val loss at step {step}, in {comparison['unit']}: ± after a loss is the seed-to-seed "
            "standard deviation, ± after a difference its standard error (it counts when over twice that)"
        )
    for note in comparison["notes"]:
        say(f"[yellow]note: {escape(note)}[/]")
    say()
    say(ranking_table(comparison))
    if comparison["differences"]:
        say()
        say(side_by_side("what differs", comparison["differences"], names))
    say()
    say(side_by_side("data", comparison["data"], names))
    if comparison["checks"]:
        say()
        say(checks_table(comparison["checks"], names))
