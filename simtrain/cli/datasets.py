"""``simtrain datasets``: the data modules, uploaded sources and prepared datasets of the data service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from simtrain.cli.dataset_stats import stats_table
from simtrain.cli.gateway_address import connect
from simtrain.cli.options import GatewayOpt, JsonOpt, TokenOpt, key_values
from simtrain.cli.output import CliError, handles_errors, print_json, say
from simtrain.cli.rows import datasets_inspect

datasets_app = typer.Typer(
    help="Data modules, uploaded sources and prepared datasets: list, upload, prepare, show, inspect.",
    no_args_is_help=True,
)


def shown_value(value: str) -> str:
    """An option's value as typed on a command line: quoted where blank or holding a control character."""
    if value == "" or value != value.strip() or not value.isprintable():
        return json.dumps(value)
    return value


def source_text(dataset: dict[str, Any]) -> str:
    """The source, with the corpus its prompts retrieve from and the examples each row remembers, if any:
    two datasets of one source tell apart."""
    stats = dataset.get("stats") or {}
    text = dataset["source"]
    if corpus := stats.get("retrieval", {}).get("corpus"):
        text += f" + retrieval from {corpus}"
    if remembered := stats.get("memory", {}).get("examples_before"):
        text += f" + memory of {remembered} examples"
    return text


def dataset_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        Column("id", no_wrap=True),
        "module",
        Column("source", overflow="fold"),
        "tokenizer",
        "packing",
        Column("vocab", justify="right"),
        Column("train tokens", justify="right"),
        Column("val tokens", justify="right"),
        Column("warnings", justify="right"),
        box=None,
    )
    for d in rows:
        splits = d["splits"]
        table.add_row(
            d["id"],
            escape(d["module"]),
            escape(source_text(d)),
            escape(d["tokenizer"]),
            escape(d.get("packing", "")),
            str(d["vocab_size"]),
            f"{splits.get('train', {}).get('tokens', 0):,}",
            f"{splits.get('val', {}).get('tokens', 0):,}",
            str(len(d["warnings"])),
        )
    return table


@datasets_app.command("list")
@handles_errors
def datasets_list(json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None) -> None:
    """The datasets prepared on the data service."""
    rows = connect(gateway, token).datasets()
    if json_out:
        print_json(rows)
    else:
        say(dataset_table(rows) if rows else "no datasets prepared (`simtrain datasets prepare` makes one)")


@datasets_app.command("sources")
@handles_errors
def datasets_sources(json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None) -> None:
    """The source files uploaded to the data service, to name in --source."""
    rows = connect(gateway, token).sources()
    if json_out:
        print_json(rows)
        return
    if not rows:
        say("no sources uploaded (`simtrain datasets upload FILE` adds one)")
        return
    table = Table(Column("name", overflow="fold"), Column("size", justify="right"), "uploaded", box=None)
    for s in rows:
        table.add_row(escape(s["name"]), f"{s['size_bytes']:,} bytes", s["uploaded_at"].replace("T", " "))
    say(table)


@datasets_app.command("modules")
@handles_errors
def datasets_modules(json_out: JsonOpt = False, gateway: GatewayOpt = None, token: TokenOpt = None) -> None:
    """The data modules on offer and their options (--option KEY=VALUE); shared options are shown once."""
    rows = connect(gateway, token).modules()
    if json_out:
        print_json(rows)
        return
    option_sets = [{(o["name"], o["default"], o["description"]) for o in m["options"]} for m in rows]
    shared = set.intersection(*option_sets) if len(rows) > 1 else set()
    if shared:
        say("[bold]options of every module[/]")
        say(
            _options_table(
                [o for o in rows[0]["options"] if (o["name"], o["default"], o["description"]) in shared]
            )
        )
    for m in rows:
        say(f"\n[bold]{escape(m['name'])}[/]  {escape(m['description'])}")
        own = [o for o in m["options"] if (o["name"], o["default"], o["description"]) not in shared]
        if own:
            say(_options_table(own))


def _options_table(options: list[dict[str, str]]) -> Table:
    table = Table(Column(no_wrap=True), Column(ratio=1), box=None, show_header=False, padding=(0, 2, 0, 2))
    for o in options:
        table.add_row(
            escape(f"{o['name']}={shown_value(o['default'])}"), escape(o["description"]), style=None
        )
    return table


def print_dataset(info: dict[str, Any]) -> None:
    say(dataset_table([info]))
    if info.get("stats"):
        say(stats_table(info["stats"], info["tokenizer"]))
    for warning in info["warnings"]:
        say(f"[yellow]warning:[/] {escape(warning)}")


@datasets_app.command("show")
@handles_errors
def datasets_show(
    dataset_id: Annotated[str, typer.Argument(help="The dataset id (from `simtrain datasets list`).")],
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Describe one prepared dataset: its splits, statistics and warnings."""
    info = connect(gateway, token).dataset(dataset_id)
    if json_out:
        print_json(info)
    else:
        print_dataset(info)


datasets_app.command("inspect")(datasets_inspect)


@datasets_app.command("upload")
@handles_errors
def datasets_upload(
    file: Annotated[Path, typer.Argument(help="The file to upload.")],
    name: Annotated[
        str | None, typer.Option(help="Name to store it under (default: the file's name).")
    ] = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload a source file to the data service (streamed, never read whole); print its source name."""
    try:
        f = file.open("rb")
    except OSError as e:
        raise CliError(f"cannot read {file}: {e.strerror or e}") from None
    with f:
        result = connect(gateway, token).upload(f, name or file.name)
    if json_out:
        print_json(result)
    else:
        say(f"uploaded {result['size_bytes']:,} bytes as source [bold]{escape(result['source'])}[/]")


@datasets_app.command("prepare")
@handles_errors
def datasets_prepare(
    source: Annotated[str, typer.Option(help="Source file: one under the data root, or an uploaded one.")],
    module: Annotated[str, typer.Option(help="Data module (see `simtrain datasets modules`).")] = "text",
    tokenizer: Annotated[str, typer.Option(help="Tokenizer: char, byte or bpe.")] = "char",
    packing: Annotated[
        str, typer.Option(help="stream (one token stream) or pairs (prompt → answer rows).")
    ] = "stream",
    option: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="A data-module option, KEY=VALUE; repeatable."),
    ] = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Prepare a dataset (idempotent: the same input gives the same id); print it."""
    request = {
        "module": module,
        "source": source,
        "tokenizer": tokenizer,
        "packing": packing,
        "options": key_values(option or [], "--option"),
    }
    info = connect(gateway, token).prepare(request)
    if json_out:
        print_json(info)
    else:
        print_dataset(info)
