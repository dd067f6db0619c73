"""``simtrain logs``: a job's own log lines, and with ``-f`` the new ones as they come."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from simtrain.cli.gateway_address import connect
from simtrain.cli.job_ids import resolve
from simtrain.cli.options import GatewayOpt, JobArg, TokenOpt
from simtrain.cli.output import handles_errors, say

POLL_S = 1.0
LEVEL_COLOUR = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}


def _line(entry: dict[str, Any]) -> str:
    try:
        when = datetime.fromisoformat(entry["time"]).astimezone().strftime("%H:%M:%S")
    except (KeyError, TypeError, ValueError):
        when = str(entry.get("time", ""))
    level = str(entry.get("level", ""))
    colour = LEVEL_COLOUR.get(level.upper())
    shown = f"[{colour}]{level:<7}[/]" if colour else f"{level:<7}"
    return f"[dim]{when}[/] {shown} {escape(str(entry.get('message', '')))}"


@handles_errors
def logs(
    job: JobArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print each line as a JSON object (JSON Lines).")
    ] = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print a job's log lines (what its trainer logged), oldest first; -f follows them live."""
    client = connect(gateway, token)
    job_id = resolve(client, job)
    after = 0
    while True:
        page = client.job_logs(job_id, after)
        if page.get("skipped") and not json_out:
            say(f"[dim]({page['skipped']} earlier lines are no longer kept)[/]")
        for entry in page["lines"]:
            if json_out:
                print(json.dumps(entry))
            else:
                say(_line(entry))
        after = page["next"]
        if page["done"] or not follow:  # one answer holds every line kept so far
            return
        time.sleep(POLL_S)
