"""The options every command that talks to the gateway shares."""

from __future__ import annotations

from typing import Annotated

import typer

from simtrain.cli.output import CliError

GatewayOpt = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        help="Gateway base URL. Default: $SIMTRAIN_GATEWAY_URL, else the stack `simtrain up` runs from this "
        "folder, else http://127.0.0.1:8000.",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="SIMTRAIN_API_TOKEN", help="API token, if the gateway asks one."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")]
JobArg = Annotated[
    str, typer.Argument(help="The job id, or the start of it (the 8 digits shown are enough).")
]


def key_values(pairs: list[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` strings as a mapping; a pair without ``=`` or a key is a mistake in the command."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{flag} {pair!r} is not KEY=VALUE")
        out[key.strip()] = value
    return out
