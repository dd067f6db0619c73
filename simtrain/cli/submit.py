"""``simtrain submit``: a job spec from a file and/or flags, sent to the gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from simtrain.cli.follow import follow
from simtrain.cli.gateway_address import connect
from simtrain.cli.job_ids import short
from simtrain.cli.options import GatewayOpt, JsonOpt, TokenOpt, key_values
from simtrain.cli.output import EXIT_BY_STATUS, CliError, handles_errors, print_json, say
from simtrain.jobs import ChecksSpec

DEFAULT_MODULE = "text"
DEFAULT_SPEC: dict[str, Any] = {
    "dataset": {"source": "tiny.txt"},
    "model": {"model_type": "gpt-nano"},
    "training": {"max_iters": 300},
}


def load_spec(path: Path) -> dict[str, Any]:
    """A job spec from a JSON file (``.json``) or a YAML one (anything else)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise CliError(f"cannot read the spec {path}: {e.strerror or e}") from None
    try:
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise CliError(f"the spec {path} is not valid {kind}: {' '.join(str(e).split())}") from None
    if not isinstance(spec, dict):
        raise CliError(f"the spec {path} is not a mapping of fields (dataset, model, training, checks)")
    return spec


def check_thresholds(pairs: list[str]) -> dict[str, float | int]:
    """``--check`` pairs as numbers, each naming a field of the job's ``checks``."""
    fields = ChecksSpec.model_fields
    out: dict[str, float | int] = {}
    for key, value in key_values(pairs, "--check").items():
        if key not in fields:
            raise CliError(f"--check {key}: no such threshold; the thresholds are {', '.join(fields)}")
        try:
            out[key] = int(value) if fields[key].annotation is int else float(value)
        except ValueError:
            raise CliError(f"--check {key}={value}: a number is asked") from None
    return out


TagOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", metavar="TAG", help="A tag (one word; a,b gives two); repeatable. Added to those there."
    ),
]


def split_tags(given: list[str]) -> list[str]:
    """``--tag`` values as tags: ``a,b`` is two (a tag has no comma), blanks dropped."""
    return [t.strip() for value in given for t in value.split(",") if t.strip()]


def set_at(spec: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``value`` at its dotted place in the spec, making the parents it needs."""
    *parents, leaf = dotted.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise CliError(f"the spec's {key!r} is not a mapping of fields")
    node[leaf] = value


@handles_errors
def submit(
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="A job spec file, YAML or JSON (.json); the flags below override it."),
    ] = None,
    module: Annotated[
        str | None, typer.Option(help=f"Data module, for a spec without one too (default {DEFAULT_MODULE}).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="Source file: one under the data root, or an uploaded one (default tiny.txt)."),
    ] = None,
    dataset_id: Annotated[
        str | None,
        typer.Option("--dataset-id", help="Train on a prepared dataset instead of module and source."),
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer: char, byte or bpe (default char).")
    ] = None,
    packing: Annotated[
        str | None,
        typer.Option(help="stream (one token stream) or pairs (prompt → answer rows); default stream."),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE",
            help="A data-module option, KEY=VALUE (see `simtrain datasets modules`); repeatable.",
        ),
    ] = None,
    check: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE", help="A fit-report threshold, KEY=VALUE (e.g. gap_warn=0.3); repeatable."
        ),
    ] = None,
    model_type: Annotated[
        str | None, typer.Option(help="minGPT model preset, e.g. gpt-nano, gpt-micro (default gpt-nano).")
    ] = None,
    max_iters: Annotated[int | None, typer.Option(help="Training iterations (default 300).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Rows per batch (default 32).")] = None,
    block_size: Annotated[int | None, typer.Option(help="Tokens of context per row (default 64).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="AdamW learning rate (default 5e-4).")] = None,
    eval_interval: Annotated[
        int | None, typer.Option(help="Steps between evaluations (default 100).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed of the model and the batches (default 0).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default auto).")] = None,
    data_service: Annotated[
        str | None, typer.Option(help="HOST:PORT of another data service to train from.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the run, to find it by.")] = None,
    tag: TagOpt = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Resubmitting with the same key returns the same job.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow the job to the end; exit with its outcome.")
    ] = False,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit a job from a spec file and/or flags; print its id (with --watch, follow it to the end)."""
    spec = load_spec(spec_file) if spec_file else json.loads(json.dumps(DEFAULT_SPEC))
    dataset = spec.setdefault("dataset", {})
    if not isinstance(dataset, dict):
        raise CliError("the spec's dataset is not a mapping of fields")
    if dataset_id:
        spec["dataset"] = dataset = {"id": dataset_id}
    elif module or source:
        dataset.pop("id", None)
    if "id" not in dataset:
        dataset.setdefault("module", DEFAULT_MODULE)
    flags = {
        "dataset.module": module,
        "dataset.source": source,
        "dataset.tokenizer": tokenizer,
        "dataset.packing": packing,
        "training.max_iters": max_iters,
        "training.batch_size": batch_size,
        "training.block_size": block_size,
        "training.learning_rate": learning_rate,
        "training.eval_interval": eval_interval,
        "training.seed": seed,
        "training.device": device,
        "data_service": data_service,
        "name": name,
    }
    for dotted, value in flags.items():
        if value is not None:
            set_at(spec, dotted, value)
    for key, value in key_values(option or [], "--option").items():
        set_at(spec, f"dataset.options.{key}", value)
    for key, number in check_thresholds(check or []).items():
        set_at(spec, f"checks.{key}", number)
    if tag:
        held = spec.get("tags") if isinstance(spec.get("tags"), list) else []
        spec["tags"] = list(dict.fromkeys([*held, *split_tags(tag)]))
    if model_type:  # a preset replaces explicit sizes
        model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
        spec["model"] = {k: v for k, v in model.items() if k.endswith("pdrop")}
        spec["model"]["model_type"] = model_type

    client = connect(gateway, token)
    job = client.submit(spec, idempotency_key)
    if json_out and not watch:
        print_json(job)
    elif not json_out:
        say(short(job["id"]))
    if watch:
        final = follow(client, job["id"], json_out)
        raise typer.Exit(EXIT_BY_STATUS[final["status"]])
