"""``simtrain conformance``: check a data service against the protocol contract."""

from __future__ import annotations

from typing import Annotated

import typer

from simtrain.cli.output import EXIT_FAILED, say


def conformance(
    address: Annotated[str, typer.Argument(help="The data service, HOST:PORT.")],
    module: Annotated[str, typer.Option(help="Module to prepare the test source with.")] = "text",
    source: Annotated[
        str | None, typer.Option(help="A source already on the server (default: upload a generated one).")
    ] = None,
) -> None:
    """Check a data service against the protocol contract; print pass/fail per check, exit 1 on any fail."""
    from simtrain.conformance import run_checks

    results = run_checks(address, module=module, source=source)
    colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}
    for r in results:
        say(f"[{colour[r.label]}]{r.label}[/]  {r.name}: {r.detail}")
    failed = sum(r.passed is False for r in results)
    passed = sum(r.passed is True for r in results)
    skipped = sum(r.passed is None for r in results)
    say(f"conformance of {address}: {passed} checks passed, {failed} failed, {skipped} skipped")
    raise typer.Exit(EXIT_FAILED if failed else 0)
