"""``simtrain experiment run|show|list|cancel|delete`` and ``simtrain compare JOB JOB…``."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from simtrain.cli.comparison import show_comparison
from simtrain.cli.gateway_address import connect
from simtrain.cli.job_ids import resolve, short
from simtrain.cli.options import GatewayOpt, JsonOpt, TokenOpt
from simtrain.cli.output import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    handles_errors,
    print_json,
    say,
)
from simtrain.cli.submit import load_spec
from simtrain.client import GatewayClient, GatewayError

experiment_app = typer.Typer(
    help="Run variants of a job over several seeds and compare them.", no_args_is_help=True
)
ExperimentArg = Annotated[
    str, typer.Argument(help="The experiment id, or the start of it (8 digits are enough).")
]
POLL_S = 1.0


def resolve_experiment(client: GatewayClient, given: str) -> str:
    """The full id of the one experiment whose id starts with ``given``."""
    wanted = given.strip().lower()
    matches = [e["id"] for e in client.experiments(limit=200) if e["id"].startswith(wanted)]
    if wanted in matches:
        return wanted
    if not matches:
        raise CliError(f"no experiment id starts with {given}", code="not_found")
    if len(matches) > 1:
        raise CliError(
            f"{given} is the start of {len(matches)} experiment ids; give more digits", code="ambiguous_id"
        )
    return matches[0]


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table("variant", "seed", "job", "status", "step", "verdict", box=None)
    for run in runs:
        table.add_row(
            escape(run["variant"]),
            str(run["seed"]),
            short(run["job_id"]),
            run["status"] or "deleted",
            f"{run['step']}/{run['max_iters']}",
            escape(run["verdict"] or ""),
        )
    return table


def _show(record: dict[str, Any]) -> None:
    cancel = " (cancel requested)" if record["cancel_requested"] else ""
    say(f"[bold]{escape(record['name'])}[/] {short(record['id'])}: {record['status']}{cancel}")
    say(runs_table(record["runs"]))
    say()
    show_comparison(record["comparison"])


def _exit_status(record: dict[str, Any]) -> int:
    statuses = {run["status"] for run in record["runs"]}
    if "failed" in statuses:
        return EXIT_FAILED
    return EXIT_CANCELLED if "cancelled" in statuses else EXIT_OK


def _watch(client: GatewayClient, experiment_id: str, json_out: bool) -> dict[str, Any]:
    """Poll to the end, saying each run's status change; return the final record."""
    seen: dict[str, str | None] = {}
    while True:
        try:
            record = client.experiment(experiment_id)
        except GatewayError as e:
            if e.status is not None and e.status < 500:
                raise
            time.sleep(POLL_S)  # a gateway restarting: the jobs go on
            continue
        for run in record["runs"]:
            if seen.get(run["job_id"]) != run["status"] and not json_out:
                say(f"{escape(run['variant'])} seed {run['seed']} ({short(run['job_id'])}): {run['status']}")
            seen[run["job_id"]] = run["status"]
        if record["status"] == "finished":
            return record
        time.sleep(POLL_S)


@experiment_app.command("run")
@handles_errors
def run(
    spec_file: Annotated[
        Path, typer.Argument(help="The experiment: name, base, variants, seeds (YAML or .json).")
    ],
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow every run to the end, then compare.")
    ] = False,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Queue every variant × seed as a job; print the experiment's id (with --watch, the comparison)."""
    client = connect(gateway, token)
    accepted = client.submit_experiment(load_spec(spec_file))
    if not watch:
        if json_out:
            print_json(accepted)
        else:
            say(f"{short(accepted['id'])}: {len(accepted['jobs'])} jobs queued")
        return
    if not json_out:
        say(f"experiment {short(accepted['id'])}: {len(accepted['jobs'])} jobs queued")
    record = _watch(client, accepted["id"], json_out)
    if json_out:
        print_json(record)
    else:
        say()
        _show(record)
    raise typer.Exit(_exit_status(record))


@experiment_app.command("show")
@handles_errors
def show(
    experiment: ExperimentArg, json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None
) -> None:
    """An experiment's runs and, as far as they have got, the comparison of its variants."""
    client = connect(gateway, token)
    record = client.experiment(resolve_experiment(client, experiment))
    if json_out:
        print_json(record)
    else:
        _show(record)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M")


@experiment_app.command("list")
@handles_errors
def list_(
    limit: Annotated[int, typer.Option(help="Experiments to list (1 to 200).")] = 20,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only experiments with this tag (repeatable).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only experiments whose name contains this.")] = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Experiments, newest first."""
    experiments = connect(gateway, token).experiments(limit, tags=tag or (), name=name)
    if json_out:
        print_json(experiments)
        return
    table = Table("id", "name", "status", "variants", "runs done", "created", box=None)
    for e in experiments:
        done = sum(1 for r in e["runs"] if r["status"] in ("succeeded", "failed", "cancelled", None))
        table.add_row(
            short(e["id"]),
            escape(" ".join([e["name"], *(f"#{t}" for t in e["spec"].get("tags", []))])),
            e["status"],
            str(len(e["spec"]["variants"])),
            f"{done}/{len(e['runs'])}",
            _when(e["created_at"]),
        )
    say(table)


@experiment_app.command("cancel")
@handles_errors
def cancel(
    experiment: ExperimentArg, json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None
) -> None:
    """Cancel every run: queued ones at once, running ones at their next step."""
    client = connect(gateway, token)
    record = client.cancel_experiment(resolve_experiment(client, experiment))
    if json_out:
        print_json(record)
    else:
        say(f"{short(record['id'])}: cancel requested")
        say(runs_table(record["runs"]))


@experiment_app.command("delete")
@handles_errors
def delete(
    experiment: ExperimentArg, json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None
) -> None:
    """Delete a finished experiment and its jobs."""
    client = connect(gateway, token)
    experiment_id = resolve_experiment(client, experiment)
    client.delete_experiment(experiment_id)
    if json_out:
        print_json({"id": experiment_id, "deleted": True})
    else:
        say(f"{short(experiment_id)}: deleted")


@handles_errors
def compare(
    jobs: Annotated[
        list[str],
        typer.Argument(help="Two or more job ids (or their starts); same spec but seed: one variant."),
    ],
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Compare jobs already run: the ranking, and checks, data and spec side by side."""
    client = connect(gateway, token)
    comparison = client.compare([resolve(client, job) for job in jobs])
    if json_out:
        print_json(comparison)
    else:
        show_comparison(comparison)
