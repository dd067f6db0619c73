"""The ``simtrain`` command: run the local stack, submit and follow jobs, read their reports, manage data.

Each command lives in the module named after what it does; this one puts them together under one app.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from simtrain.cli import conformance, datasets, fork, jobs, logs, output, report, stack, submit
from simtrain.cli.output import EXIT_NOT_FIT, EXIT_STATUS_HELP, EXIT_USAGE, CliError, fail
from simtrain.cli.stack import DEMO_CORPUS

__all__ = ["DEMO_CORPUS", "EXIT_NOT_FIT", "app"]


class _Commands(TyperGroup):
    """Usage mistakes (a bad flag or value) as JSON too when the command line asks for ``--json``."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except typer.TyperException as e:  # what typer raises for a bad command line (UsageError and kin)
            if "--json" not in getattr(self, "argv", []) or not hasattr(e, "format_message"):
                raise
            fail(CliError(e.format_message(), getattr(e, "exit_code", EXIT_USAGE)), json_out=True)


app = typer.Typer(
    cls=_Commands,
    help="simtrain: is this dataset fit for GPT-style training?",
    epilog=EXIT_STATUS_HELP,
    no_args_is_help=True,
)


@app.callback()
def _each_run() -> None:
    output.use_new_console()


COMMANDS = (
    submit.submit,
    fork.fork,
    jobs.watch,
    jobs.jobs,
    logs.logs,
    report.report,
    jobs.cancel,
    jobs.delete,
    jobs.checkpoint,
    stack.up,
    stack.down,
    stack.demo,
    conformance.conformance,
)
for command in COMMANDS:
    app.command(epilog=EXIT_STATUS_HELP)(command)
app.add_typer(datasets.datasets_app, name="datasets")
