"""``simtrain fork``: a new job from an existing one, some settings changed, optionally from its checkpoint.

"Train 500 more steps at a lower learning rate" is ``simtrain fork JOB --from-checkpoint --max-iters 500
--lr 1e-4``: a fork from the checkpoint starts from the source's weights with a fresh optimizer at step 0,
so ``--max-iters`` counts the fork's own steps.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml

from simtrain.cli.follow import follow
from simtrain.cli.gateway_address import connect
from simtrain.cli.job_ids import resolve, short
from simtrain.cli.options import GatewayOpt, JobArg, JsonOpt, TokenOpt, key_values
from simtrain.cli.output import EXIT_BY_STATUS, CliError, handles_errors, print_json, say
from simtrain.cli.submit import TagOpt, set_at, split_tags


def _value(text: str) -> Any:
    """A ``--set`` value as YAML reads it: ``500`` a number, ``true`` a boolean, ``null`` none, else text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


@handles_errors
def fork(
    job: JobArg,
    from_checkpoint: Annotated[
        bool,
        typer.Option(
            "--from-checkpoint",
            help="Start from the job's latest checkpoint weights (fresh optimizer, from step 0); "
            "without it the fork starts from fresh weights.",
        ),
    ] = False,
    max_iters: Annotated[
        int | None, typer.Option(help="The fork's training steps (from its step 0).")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", "--learning-rate", help="AdamW learning rate.")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed; another one keeps a fork from replaying its source's batches."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="The fork's name (default: the source's).")] = None,
    tag: TagOpt = None,
    option: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="A data-module option, KEY=VALUE; repeatable."),
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="Any spec field by its dotted name, e.g. training.warmup_iters=50; repeatable.",
        ),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow the fork to the end; exit with its outcome.")
    ] = False,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Fork a job: its spec with the settings given changed; print the new job's id."""
    client = connect(gateway, token)
    source_id = resolve(client, job)
    changes: dict[str, Any] = {}
    for dotted, value in key_values(setting or [], "--set").items():
        if dotted.split(".")[0] in ("init_from", "forked_from"):
            raise CliError(f"--set {dotted}: the fork sets it; use --from-checkpoint")
        set_at(changes, dotted, _value(value))
    flags = {
        "training.max_iters": max_iters,
        "training.learning_rate": learning_rate,
        "training.seed": seed,
        "name": name,
    }
    for dotted, value in flags.items():
        if value is not None:
            set_at(changes, dotted, value)
    for key, value in key_values(option or [], "--option").items():
        set_at(changes, f"dataset.options.{key}", value)
    if tag:  # added to the source's tags, as submit adds them to a spec file's
        spec = client.job(source_id)["spec"] or {}
        changes["tags"] = list(dict.fromkeys([*(spec.get("tags") or []), *split_tags(tag)]))

    new = client.fork(source_id, changes, init_from_checkpoint=from_checkpoint)
    if json_out and not watch:
        print_json(new)
    elif not json_out:
        say(short(new["id"]))
    if watch:
        final = follow(client, new["id"], json_out)
        raise typer.Exit(EXIT_BY_STATUS[final["status"]])
