"""``simtrain datasets inspect``: a split's rows as the model trains on them, decoded token by token.

Trained tokens (loss is taken on predicting them) are told apart from masked ones (input only) and from
padding: by colour on a terminal, and by marks that survive a pipe — ``[masked]``, ``{pad ×N}``.
Whitespace and control characters are drawn visibly (``⏎`` for a newline), so a row reads as the model
sees it.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from simtrain.cli import output
from simtrain.cli.gateway_address import connect
from simtrain.cli.options import GatewayOpt, JsonOpt, TokenOpt
from simtrain.cli.output import handles_errors, print_json, say

MAX_COUNT = 64
STYLES = {"trained": "green", "masked": "grey50", "padding": "grey37 italic"}
SPECIAL_STYLE = "bold magenta"
# Characters that would vanish or move the cursor, drawn as a visible mark.
VISIBLE = {"\n": "⏎", "\r": "␍", "\t": "⇥", "\x00": "␀"}


def visible(piece: str) -> str:
    """A token's text with newlines, tabs and other control characters drawn as marks."""
    out = []
    for ch in piece:
        if ch in VISIBLE:
            out.append(VISIBLE[ch])
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def render_row(tokens: list[dict[str, Any]], marks: bool) -> Text:
    """One row's tokens as text: each styled by its role; with ``marks``, masked runs in brackets and
    padding as ``{pad ×N}`` (for output without colour)."""
    text = Text()
    for role, run in itertools.groupby(tokens, key=lambda t: t["role"]):
        run = list(run)
        if role == "padding":
            text.append(f"{{pad ×{len(run)}}}", style=STYLES["padding"])
            continue
        if marks and role == "masked":
            text.append("[", style=STYLES[role])
        for token in run:
            style = f"{STYLES[role]} {SPECIAL_STYLE}" if token["special"] else STYLES[role]
            text.append(visible(token["text"]), style=style)
        if marks and role == "masked":
            text.append("]", style=STYLES[role])
    return text


def legend(marks: bool) -> Text:
    text = Text("legend: ")
    text.append("trained", style=STYLES["trained"])
    text.append(" (loss on it)  ")
    text.append("[masked]" if marks else "masked", style=STYLES["masked"])
    text.append(" (input only)  ")
    text.append("{pad ×N}", style=STYLES["padding"])
    text.append("  ⏎ newline, ⇥ tab")
    return text


def row_heading(row: dict[str, Any]) -> str:
    trained = sum(t["role"] == "trained" for t in row["tokens"])
    cut = ", truncated to the block" if row["truncated"] else ""
    where = f"token {row['token_offset']:,}"
    return f"row {row['index']} ({where}; {trained} of {len(row['tokens'])} tokens trained{cut})"


def print_rows(body: dict[str, Any], dataset_id: str) -> None:
    marks = output.console.color_system is None
    rows, total = body["rows"], body["total_rows"]
    split, start = body["split"], body["start"]
    if not rows:
        why = "the split is empty" if total == 0 else f"it has {total:,} rows at this block size"
        say(f"no rows from {start:,} in the {escape(split)} split: {why}")
        return
    last = rows[-1]["index"]
    say(
        f"{escape(split)} split of {escape(dataset_id)}: rows {rows[0]['index']:,}–{last:,} of {total:,} "
        f"({body['packing']} packing, block_size {body['block_size']})"
    )
    say(legend(marks))
    for row in rows:
        say(f"\n[bold]{row_heading(row)}[/]")
        say(render_row(row["tokens"], marks))
    if last + 1 < total:
        say(f"\nmore: --start {last + 1}")


@handles_errors
def datasets_inspect(
    dataset_id: Annotated[str, typer.Argument(help="The dataset id (from `simtrain datasets list`).")],
    split: Annotated[str, typer.Option(help="train or val.")] = "train",
    start: Annotated[int, typer.Option(min=0, help="The first row, from 0.")] = 0,
    count: Annotated[int, typer.Option(min=1, max=MAX_COUNT, help="How many rows.")] = 8,
    block_size: Annotated[int, typer.Option(min=1, help="The block size training would use.")] = 64,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show the rows the model trains on, token by token: trained, masked (input only) and padding."""
    body = connect(gateway, token).dataset_rows(dataset_id, split, start, count, block_size)
    if json_out:
        print_json(body)
    else:
        print_rows(body, dataset_id)
