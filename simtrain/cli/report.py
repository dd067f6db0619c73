"""``simtrain report``: the fit report in a screenful, one line per check, advice only where a check fails."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from simtrain.cli.gateway_address import connect
from simtrain.cli.job_ids import resolve
from simtrain.cli.options import GatewayOpt, JobArg, JsonOpt, TokenOpt
from simtrain.cli.output import EXIT_NOT_FIT, handles_errors, print_json, say

VERDICT_COLOUR = {"fit": "green", "fit with warnings": "yellow", "not fit": "red"}
CHECK_COLOUR = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
CONTEXT_SHOWN = 80  # characters of a probe's retrieved context the table shows


def _loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _as_list(checks: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
    """Checks as a list; an older report kept them as a mapping of name to result."""
    if isinstance(checks, dict):
        return [{"name": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in checks.items()]
    return checks


def _advice(check: dict[str, Any]) -> str:
    """For a failing or warning check: the threshold it crossed and the ``--check`` fields that set it."""
    parts = []
    if threshold := check.get("threshold"):
        parts.append(f"threshold {threshold}")
    if setting := check.get("setting"):
        fields = [s.strip().removeprefix("checks.") for s in str(setting).split(",")]
        parts.append("set with " + ", ".join(f"--check {f}=…" for f in fields))
    return "; ".join(parts)


def checks_table(checks: list[dict[str, Any]]) -> Table:
    """Failing and warning checks with their whole reason and advice; the others on one line each."""
    table = Table(
        Column("verdict", no_wrap=True),
        Column("check", no_wrap=True),
        Column("why", ratio=1),
        box=None,
        show_header=False,
        padding=(0, 2, 0, 0),
    )
    for c in checks:
        verdict = str(c.get("verdict", ""))
        colour = CHECK_COLOUR.get(verdict, "")
        reason = Text(str(c.get("reason", "")))
        if verdict in ("fail", "warn"):
            if advice := _advice(c):
                reason.append("\n" + advice, style="dim")
        else:
            reason.no_wrap, reason.overflow = True, "ellipsis"
        table.add_row(Text(verdict, style=colour), str(c.get("name", "")), reason)
    return table


def _probe_cell(row: dict[str, Any]) -> Text:
    """A probe's answer at one step, with its score where it has an expected answer."""
    if "error" in row:
        return Text(row["error"], style="dim")
    cell = Text(repr(row.get("text", "")))
    if "exact" in row:
        mark, colour = (
            ("exact", "green") if row["exact"] else ("prefix", "green") if row["prefix"] else ("✗", "red")
        )
        accuracy = row.get("token_accuracy")
        cell.append(f"\n{mark}" + (f" {accuracy:.0%}" if accuracy is not None else ""), style=colour)
    return cell


def shortened(text: str, most: int = CONTEXT_SHOWN) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def probes_table(probes: dict[str, Any]) -> Table:
    """One row per probe, one column per shown evaluation step: how each answer changed."""
    steps = probes.get("shown_steps") or probes.get("steps") or []
    table = Table(Column("probe", ratio=1), *(Column(f"step {s}", ratio=1) for s in steps), box=None)
    for item in probes.get("items") or []:
        probe = Text(repr(item.get("prompt", "")))
        if item.get("expected") is not None:
            probe.append(f"\n→ {item['expected']!r}", style="dim")
        if "context" in item:  # a retrieval dataset: asked after the passages its index found
            probe.append(f"\nafter context {shortened(item['context'])!r}", style="dim")
        if item.get("error"):
            table.add_row(probe, Text(item["error"], style="dim"))
            continue
        by_step = {r.get("step"): r for r in item.get("answers") or []}
        table.add_row(probe, *(_probe_cell(by_step[s]) if s in by_step else Text("") for s in steps))
    return table


def print_report(report: dict[str, Any], gateway_url: str, links: bool = True) -> None:
    """The verdict first, then the checks, losses, a sample, and (with ``links``) where the full report is."""
    job_id = report["job_id"]
    if verdict := report.get("verdict"):
        colour = VERDICT_COLOUR.get(verdict, "default")
        summary = f" ({escape(report['summary'])})" if report.get("summary") else ""
        say(f"verdict: [bold {colour}]{verdict}[/]{summary}")
    if checks := _as_list(report.get("checks") or []):
        say(checks_table(checks))
    if "final" in report:  # a job refused before training has no losses
        init, final = report["loss_at_init"], report["final"]
        train, val = _loss(final["train_loss"]), _loss(final["val_loss"])
        say(
            f"loss at init {_loss(init['val'])} (ln vocab = {init['expected_ln_vocab']:.3f}) → "
            f"final train loss [bold]{train}[/], val loss [bold]{val}[/]"
        )
    if b := report.get("baselines"):
        say(
            f"learned: val loss {b['below_unigram_nats']:.3f} nats ({b['below_unigram_share']:.1%}) below "
            f"the unigram baseline {b['unigram_nats']:.3f}, {b['below_uniform_nats']:.3f} nats "
            f"({b['below_uniform_share']:.1%}) below ln vocab"
        )
    if report.get("samples"):
        sample = report["samples"][0]
        say(f"sample: [dim]{escape(repr(sample['prompt']))}[/] → {escape(repr(sample['completion']))}")
    if (probes := report.get("probes")) and probes.get("items"):
        final = probes.get("final")
        if final:
            accuracy = final.get("token_accuracy")
            say(
                f"probes: {final['exact']} of {final['scored']} exact, {final['prefix']} by prefix"
                + (f", {accuracy:.0%} of expected tokens right" if accuracy is not None else "")
                + " at the last evaluation"
            )
        else:
            say("probes:")
        if probes.get("note"):
            say(f"[yellow]probes {escape(probes['note'])}[/]")
        say(probes_table(probes))
    if not links:
        return
    base = f"{gateway_url.rstrip('/')}/v1/jobs/{job_id}"
    say(f"full report: {base}/report.html" if verdict else f"full report: {base}/report")


@handles_errors
def report(
    job: JobArg, json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None
) -> None:
    """Show a job's fit report: the verdict, one line per check (failing first), losses and a sample.

    Exits 0 when the data is fit (with or without warnings), 4 when it is not fit, 1 when there is no report.
    """
    client = connect(gateway, token)
    body = client.report(resolve(client, job))
    if json_out:
        print_json(body)
    else:
        print_report(body, client.base_url)
    if body.get("verdict") == "not fit":
        raise typer.Exit(EXIT_NOT_FIT)
