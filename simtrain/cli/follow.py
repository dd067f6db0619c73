"""Following a job live: a progress bar while it runs, one line at its end."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from simtrain.cli import output
from simtrain.cli.output import print_json, say
from simtrain.client import GatewayClient


def progress_line(job: dict[str, Any]) -> str:
    m = job.get("metrics") or {}
    parts = [f"{job['status']:<9}", f"step {job['progress']['step']}/{job['progress']['max_iters']}"]
    if "train/loss" in m:
        parts.append(f"loss {m['train/loss']:.4f}")
    if "val/loss" in m:
        parts.append(f"val {m['val/loss']:.4f}")
    if "tokens_per_s" in m:
        parts.append(f"{m['tokens_per_s']:,.0f} tok/s")
    if job.get("verdict"):
        parts.append(f"verdict {job['verdict']}")
    return "  ".join(parts)


def print_end(job: dict[str, Any]) -> None:
    say(escape(progress_line(job)))
    if job.get("error"):
        say(f"[red]error:[/] {escape(job['error'])}")


def follow(client: GatewayClient, job_id: str, json_out: bool = False) -> dict[str, Any]:
    """Follow a job's live events with a progress bar (step, loss, tokens/s, ETA); return its final record."""
    job = client.job(job_id)
    columns = (
        TextColumn("[bold]{task.fields[status]:<9}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=output.console, transient=True, disable=json_out) as progress:
        task = progress.add_task(
            job_id,
            total=job["progress"]["max_iters"],
            completed=job["progress"]["step"],
            status=job["status"],
            loss="—",
            tps="—",
        )

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "metrics":
                fields: dict[str, Any] = {"completed": data["step"]}
                if "train/loss" in data:
                    fields["loss"] = f"{data['train/loss']:.4f}"
                if "tokens_per_s" in data:
                    fields["tps"] = f"{data['tokens_per_s']:,.0f}"
                progress.update(task, **fields)
            elif event in ("status", "end") and "progress" in data:
                progress.update(task, status=data["status"], completed=data["progress"]["step"])

        final = client.follow(job_id, on_event)
    if json_out:
        print_json(final)
    else:
        print_end(final)
    return final
