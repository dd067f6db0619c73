"""The commands on jobs once submitted: list, watch, cancel, delete, download the checkpoint."""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from simtrain.cli.follow import follow
from simtrain.cli.gateway_address import connect
from simtrain.cli.job_ids import resolve, short
from simtrain.cli.options import GatewayOpt, JobArg, JsonOpt, TokenOpt
from simtrain.cli.output import EXIT_BY_STATUS, CliError, handles_errors, print_json, say
from simtrain.experiments import is_filing_tag
from simtrain.jobs import JobStatus


@handles_errors
def watch(job: JobArg, json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None) -> None:
    """Follow a job live (step, loss, tokens/s, ETA); exit 0 on success, 1 on failure, 3 if cancelled."""
    client = connect(gateway, token)
    final = follow(client, resolve(client, job), json_out)
    raise typer.Exit(EXIT_BY_STATUS[final["status"]])


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M") if ts else ""


def _data(spec: dict[str, Any] | None) -> str:
    if spec is None:
        return ""
    ds = spec["dataset"]
    return ds.get("id") or f"{ds['module']}:{ds['source']}"


def _model(spec: dict[str, Any] | None) -> str:
    if spec is None:
        return ""
    model = spec["model"]
    return model.get("model_type") or f"{model['n_layer']}x{model['n_embd']}"


def _name(spec: dict[str, Any] | None) -> str:
    """The job's name and its tags, as ``baseline #lr #v1`` (an experiment run's filing tags left out:
    its name says the same, and ``--tag`` still finds them)."""
    spec = spec or {}
    tags = [f"#{tag}" for tag in spec.get("tags") or [] if not is_filing_tag(tag)]
    return " ".join([spec.get("name") or "", *tags]).strip()


def jobs_table(rows: list[dict[str, Any]]) -> Table:
    """The jobs as a table; a job's name and tags go under its id, so a narrow terminal still fits it."""
    table = Table(
        Column("id", min_width=8, overflow="fold"),
        Column("status", no_wrap=True, min_width=9),
        Column("verdict", min_width=8),
        Column("step", no_wrap=True, justify="right"),
        Column("loss", no_wrap=True),
        Column("val", no_wrap=True),
        Column("model", no_wrap=True),
        Column("data", min_width=10, overflow="fold"),
        Column("created", min_width=5),
        box=None,
    )
    for job in rows:
        m = job["metrics"]
        name = _name(job["spec"])
        table.add_row(
            short(job["id"]) + (f"\n[dim]{escape(name)}[/dim]" if name else ""),
            job["status"],
            job.get("verdict") or "",
            f"{job['progress']['step']}/{job['progress']['max_iters']}",
            f"{m['train/loss']:.4f}" if "train/loss" in m else "",
            f"{m['val/loss']:.4f}" if "val/loss" in m else "",
            _model(job["spec"]),
            _data(job["spec"]),
            _when(job["created_at"]),
        )
    return table


@handles_errors
def jobs(
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this status.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", metavar="TAG", help="Only jobs with this tag; repeatable.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only jobs whose name contains this (any case).")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page (1 to 200).")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Start after this cursor (printed under the previous page).")
    ] = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """List jobs, newest first, with their verdict once the report is written."""
    page = connect(gateway, token).jobs(status.value if status else None, limit, cursor, tag or [], name)
    if json_out:
        print_json(page)
        return
    say(jobs_table(page["jobs"]) if page["jobs"] else "no jobs")
    if page["next_cursor"]:
        filters = [f"--tag {t}" for t in tag or []] + ([f"--name {shlex.quote(name)}"] if name else [])
        filters += [f"--status {status.value}"] if status else []
        say(f"more: simtrain jobs {' '.join([*filters, '--cursor', page['next_cursor']])}")


@handles_errors
def cancel(
    job: JobArg, json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None
) -> None:
    """Cancel a job: a queued one at once, a running one at its next step (it keeps a checkpoint)."""
    client = connect(gateway, token)
    result = client.cancel(resolve(client, job))
    if json_out:
        print_json(result)
    elif result["cancel_requested"]:
        say(f"cancel requested: job {short(result['id'])} stops at its next step")
    else:
        say(f"job {short(result['id'])} {result['status']}")


@handles_errors
def delete(
    job: JobArg, json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None
) -> None:
    """Delete a finished job with its metrics, report and checkpoint."""
    client = connect(gateway, token)
    job_id = resolve(client, job)
    client.delete(job_id)
    if json_out:
        print_json({"id": job_id, "deleted": True})
    else:
        say(f"deleted job {short(job_id)}")


@handles_errors
def checkpoint(
    job: JobArg,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="The file to save it as (default: JOB-checkpoint.pt here)."),
    ] = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a job's latest checkpoint (a PyTorch file, for torch.load)."""
    client = connect(gateway, token)
    job_id = resolve(client, job)
    path = output or Path(f"{short(job_id)}-checkpoint.pt")
    if path.is_dir():
        raise CliError(f"{path} is a folder: give the file to save the checkpoint as")
    if not path.parent.is_dir():
        raise CliError(f"cannot save {path}: there is no folder {path.parent}")
    try:
        size = client.download_checkpoint(job_id, path)
    except OSError as e:
        raise CliError(f"cannot save {path}: {e.strerror or e}") from None
    if json_out:
        print_json({"id": job_id, "path": str(path), "size_bytes": size})
    else:
        say(f"saved {path} ({size:,} bytes)")
