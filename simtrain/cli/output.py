"""How the CLI speaks: a console sized for where it prints, JSON for scripts, and errors with exit codes."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simtrain.client import GatewayError

EXIT_OK = 0
EXIT_FAILED = 1  # the job failed, or the gateway refused the request
EXIT_USAGE = 2  # a mistake in the command: a bad flag, file or job id, a missing folder
EXIT_CANCELLED = 3
EXIT_NOT_FIT = 4  # `report`: the verdict is "not fit"
EXIT_UNREACHABLE = 5  # no answer from the gateway
EXIT_BY_STATUS = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}

EXIT_STATUS_HELP = (
    "Exit status: 0 done; 1 the job failed or the gateway refused the request; 2 a mistake in the command "
    "(a bad flag, file, folder or job id); 3 the job was cancelled; 4 the report's verdict is not fit; "
    "5 the gateway cannot be reached."
)
# Piped output is for reading back whole: no table cell is cut or wrapped.
PIPED_WIDTH = 10_000


def new_console() -> Console:
    """The terminal's width on a terminal; when piped, COLUMNS if set, else wide enough for any row."""
    if Console().is_terminal:
        return Console(soft_wrap=True)
    columns_set = os.environ.get("COLUMNS", "").isdigit()
    return Console(soft_wrap=True, width=None if columns_set else PIPED_WIDTH)


console = new_console()


def use_new_console() -> None:
    """Size the console for this run (the module's console was made at import, maybe for another stdout)."""
    global console
    console = new_console()


def say(text: Any = "", **kwargs: Any) -> None:
    """Print rich markup (or a renderable such as a table) on the console.

    Piped, a table's lines lose the spaces that pad them to the width of its widest row.
    """
    if console.is_terminal or not isinstance(text, Table):
        console.print(text, highlight=False, **kwargs)
        return
    with console.capture() as captured:
        console.print(text, highlight=False, **kwargs)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


class CliError(Exception):
    """A failure to report in one line (or one JSON object) and leave with ``exit_status``; no traceback."""

    def __init__(self, message: str, exit_status: int = EXIT_USAGE, code: str = "usage_error"):
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status
        self.code = code


def from_gateway(e: GatewayError) -> CliError:
    """A gateway's refusal exits 1; no answer at all exits 5."""
    if e.status is None:
        hint = " (start one with `simtrain up`, or name it with --gateway or SIMTRAIN_GATEWAY_URL)"
        return CliError(f"{e}{hint}", EXIT_UNREACHABLE, "gateway_unreachable")
    return CliError(str(e), EXIT_FAILED, e.code or f"http_{e.status}")


def fail(error: CliError, json_out: bool) -> NoReturn:
    if json_out:
        print_json(
            {"error": {"message": error.message, "code": error.code, "exit_status": error.exit_status}}
        )
    else:
        say(f"[red]{escape(error.message)}[/]")
    raise typer.Exit(error.exit_status)


F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(command: F) -> F:
    """Wrap a command so that a CliError or a gateway error ends it with its message and exit status."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        json_out = bool(kwargs.get("json_out", False))
        try:
            return command(*args, **kwargs)
        except GatewayError as e:
            fail(from_gateway(e), json_out)
        except CliError as e:
            fail(e, json_out)

    return run  # type: ignore[return-value]
