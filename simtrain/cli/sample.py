"""Asking a model: ``simtrain sample`` continues a prompt with a downloaded checkpoint alone (no services);
``simtrain ask`` asks a job's model through the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from simtrain.cli.gateway_address import connect
from simtrain.cli.job_ids import resolve
from simtrain.cli.options import GatewayOpt, JobArg, JsonOpt, TokenOpt
from simtrain.cli.output import CliError, handles_errors, print_json, say

MaxNewTokensOpt = Annotated[int, typer.Option(min=1, help="Tokens to generate after the prompt.")]
TemperatureOpt = Annotated[
    float, typer.Option(help="Above 0: above 1 more varied, below 1 more predictable.")
]
TopKOpt = Annotated[
    int | None, typer.Option(min=1, help="Sample only among the K likeliest tokens (1: greedy).")
]
SamplesOpt = Annotated[int, typer.Option("-n", "--samples", min=1, help="How many answers to draw.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed the sampling, for answers that repeat.")]


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise CliError(
            f"--temperature must be above 0, got {temperature}; for the likeliest answer use --top-k 1"
        )


def print_completions(
    prompt: str,
    completions: list[dict],
    step: int | None,
    context: dict | None = None,
    note: str | None = None,
) -> None:
    """Each answer after the prompt, dimmed, with why it ended; first the retrieved context, if any."""
    if context is not None:
        say(f"[bold]retrieved context[/] ({context['passages']} passage(s), before the prompt):")
        say(f"[dim]{escape(context['text'])}[/]" if context["text"] else "[dim](nothing found)[/]")
    if note is not None:
        say(f"[yellow]{escape(note)}[/]")
    where = f" (model at step {step})" if step is not None else ""
    for i, c in enumerate(completions, 1):
        ending = "ended by the model" if c["stopped"] else f"{c['tokens']} tokens (the limit)"
        say(f"[bold]answer {i}[/]{where}, {ending}:")
        say(f"[dim]{escape(prompt)}[/]{escape(c['text'])}")


@handles_errors
def sample(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint file (`simtrain checkpoint JOB` saves one).")
    ],
    prompt: Annotated[str, typer.Argument(help="The text for the model to continue.")],
    max_new_tokens: MaxNewTokensOpt = 100,
    temperature: TemperatureOpt = 1.0,
    top_k: TopKOpt = None,
    samples: SamplesOpt = 1,
    seed: SeedOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Continue PROMPT with the model in a checkpoint, using the tokenizer saved in it (needs torch)."""
    # Imported here: torch loads only for the command that needs it.
    from trainer_service.checkpoint import CheckpointError
    from trainer_service.sampler import PromptError, Sampler

    check_temperature(temperature)
    if not checkpoint.is_file():
        raise CliError(
            f"{checkpoint}: no such file" if not checkpoint.exists() else f"{checkpoint} is a folder"
        )
    try:
        sampler = Sampler.from_checkpoint(checkpoint)
        completions = sampler.complete(prompt, max_new_tokens, temperature, top_k, samples, seed)
    except (CheckpointError, PromptError) as e:
        raise CliError(str(e)) from None
    answers = [c.as_dict() for c in completions]
    note = None
    if sampler.retrieval is not None:
        note = (
            f"this model was trained with passages from dataset {sampler.retrieval['dataset_id']}'s "
            "retrieval index before each prompt, and a checkpoint alone has no index: ask the job "
            "through the gateway (`simtrain ask`) for that context, or write the passages at the start "
            "of the prompt yourself, then a line '===', then the question"
        )
    if json_out:
        print_json(
            {"prompt": prompt, "step": sampler.step, "completions": answers}
            | ({"note": note} if note else {})
        )
    else:
        print_completions(prompt, answers, sampler.step, note=note)


@handles_errors
def ask(
    job: JobArg,
    prompt: Annotated[str, typer.Argument(help="The text for the model to continue.")],
    max_new_tokens: MaxNewTokensOpt = 100,
    temperature: TemperatureOpt = 1.0,
    top_k: TopKOpt = None,
    samples: SamplesOpt = 1,
    seed: SeedOpt = None,
    json_out: JsonOpt = False,
    gateway: GatewayOpt = None,
    token: TokenOpt = None,
) -> None:
    """Ask a job's model (its latest checkpoint, while it trains or after) to continue PROMPT."""
    check_temperature(temperature)
    client = connect(gateway, token)
    result = client.generate(
        resolve(client, job),
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        n=samples,
        seed=seed,
    )
    if json_out:
        print_json(result)
    else:
        print_completions(
            prompt, result["completions"], result["step"], result.get("context"), result.get("note")
        )
