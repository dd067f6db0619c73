"""Experiments: one base job spec, named variants of it, several seeds each; every run an ordinary job.

A variant is a partial job spec deep-merged into the base (``null`` removes a base value), so a variant
names only what it changes. Seeds are the experiment's, not the variants': each run's ``training.seed``
comes from ``seeds``, so every variant trains on the same seeds and seed-to-seed spread can be measured.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from simtrain.jobs import MAX_TAGS, JobSpec, JobStatus, Tag
from simtrain.spec_merge import deep_merge

VARIANT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
MAX_RUNS = 64  # variants × seeds
MAX_SEEDS = 16
RUN_TAGS = 2  # what every run's tags gain: experiment:<name> and variant:<name>


class ExperimentSpec(BaseModel):
    """What a client submits to ``POST /v1/experiments``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="A title for people")
    base: dict[str, Any] = Field(description="A job spec (or part of one) every variant starts from")
    variants: dict[str, dict[str, Any]] = Field(
        min_length=1,
        max_length=16,
        description="Variant name → the part of a job spec it changes, deep-merged into `base`; "
        "null removes a base value",
    )
    seeds: StrictInt | list[StrictInt] = Field(
        default=2, description="How many seeds (0, 1, …), or the seeds themselves; each run's training.seed"
    )
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=MAX_TAGS - RUN_TAGS,
        description="Words to find the experiment by; every run carries them too",
    )

    @field_validator("variants")
    @classmethod
    def _names(cls, variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in variants:
            if not re.fullmatch(VARIANT_NAME, name):
                raise ValueError(
                    f"variant name {name!r}: 1 to 64 letters, digits or _ . + -, "
                    "starting with a letter or digit"
                )
        return variants

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int]) -> int | list[int]:
        count = seeds if isinstance(seeds, int) else len(seeds)
        if not 1 <= count <= MAX_SEEDS:
            raise ValueError(f"give 1 to {MAX_SEEDS} seeds (a count, or a list of them)")
        values = range(seeds) if isinstance(seeds, int) else seeds
        if any(s < 0 or s >= 2**63 for s in values) or len(set(values)) < len(values):
            raise ValueError("seeds must be distinct integers from 0 to 2**63 - 1")
        return seeds

    def seed_values(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    seed: int
    spec: JobSpec


@dataclass(frozen=True)
class VariantProblem:
    """Why a variant's job spec is invalid: ``field`` is dotted, from the experiment's top
    (``variants.B.training.max_iters``, or ``base.…`` where the value came from the base)."""

    variant: str
    field: str
    message: str


class InvalidVariants(ValueError):
    def __init__(self, problems: list[VariantProblem]):
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def experiment_tag(name: str) -> str:
    """The tag that files a run under its experiment (and its MLflow experiment): the name as one word."""
    word = "-".join(name.replace(",", " ").split())
    return f"experiment:{word}"[:64]


def is_filing_tag(tag: str) -> bool:
    """One of the two tags every experiment run gets; its name already says what they say."""
    return tag.startswith(("experiment:", "variant:"))


def variant_spec(spec: ExperimentSpec, variant: str) -> dict[str, Any]:
    """The variant's merged job spec, before a seed is set."""
    return deep_merge(spec.base, spec.variants[variant])


def run_labels(spec: ExperimentSpec, variant: str, seed: int, merged: dict[str, Any]) -> dict[str, Any]:
    """A run's name (unless the variant gives one) and tags: its own, the experiment's, and two that
    say which experiment and variant it is, so the job list, the CLI and MLflow can find them."""
    own = merged.get("tags") if isinstance(merged.get("tags"), list) else []
    tags = [*own, *spec.tags, experiment_tag(spec.name), f"variant:{variant}"[:64]]
    name = merged.get("name") or f"{spec.name[:96]} / {variant[:16]} / seed {seed}"
    return {"name": name, "tags": list(dict.fromkeys(tags))}


def _has_path(tree: Any, path: tuple[str | int, ...]) -> bool:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def _where(spec: ExperimentSpec, variant: str, loc: tuple[str | int, ...]) -> str:
    """The dotted field a validation error points at, placed where the value came from."""
    # Pydantic's loc may end in a validator's name (a model-level error has none beyond the model).
    path = tuple(str(p) for p in loc)
    dotted = ".".join(path)
    if _has_path(spec.variants[variant], path) or not _has_path(spec.base, path):
        return f"variants.{variant}.{dotted}" if dotted else f"variants.{variant}"
    return f"base.{dotted}"


def expand(spec: ExperimentSpec) -> list[PlannedRun]:
    """Every variant × seed as a validated job spec, in variant then seed order.

    Raises :class:`InvalidVariants` naming every bad field of every variant; a variant or the base may not
    set ``training.seed``, since the experiment's seeds set it.
    """
    seeds = spec.seed_values()
    if len(seeds) * len(spec.variants) > MAX_RUNS:
        problem = VariantProblem(
            "", "seeds", f"{len(spec.variants)} variants × {len(seeds)} seeds is over {MAX_RUNS} runs"
        )
        raise InvalidVariants([problem])
    problems: list[VariantProblem] = []
    runs: list[PlannedRun] = []
    for where, part in [("base", spec.base), *((f"variants.{n}", v) for n, v in spec.variants.items())]:
        if isinstance(part.get("training"), dict) and "seed" in part["training"]:
            problems.append(
                VariantProblem(
                    where.removeprefix("variants."),
                    f"{where}.training.seed",
                    "set by the experiment's seeds; remove it",
                )
            )
    if problems:
        raise InvalidVariants(problems)
    for name in spec.variants:
        merged = variant_spec(spec, name)
        try:
            for seed in seeds:
                seeded = deep_merge(
                    merged, {"training": {"seed": seed}, **run_labels(spec, name, seed, merged)}
                )
                runs.append(PlannedRun(name, seed, JobSpec.model_validate(seeded)))
        except ValidationError as e:
            for error in e.errors(include_url=False):
                problems.append(
                    VariantProblem(name, _where(spec, name, error["loc"]), f"variant {name}: {error['msg']}")
                )
    if problems:
        raise InvalidVariants(problems)
    return runs


class ExperimentStatus(StrEnum):
    queued = "queued"  # no run has started
    running = "running"
    finished = "finished"  # every run finished (succeeded, failed or cancelled)


class ExperimentRun(BaseModel):
    variant: str
    seed: int
    job_id: str
    status: JobStatus | None = Field(description="The job's status; null when its record is gone")
    verdict: str | None = None
    error: str | None = None
    step: int = 0
    max_iters: int = 0


class ExperimentView(BaseModel):
    """An experiment as ``GET /v1/experiments/{id}`` shows it."""

    id: str
    name: str
    status: ExperimentStatus
    cancel_requested: bool = False
    spec: ExperimentSpec
    runs: list[ExperimentRun]
    created_at: float = Field(default_factory=time.time)


def experiment_status(statuses: list[JobStatus | None]) -> ExperimentStatus:
    """Finished once every run is (a run whose record is gone counts as finished), queued while none began."""
    if all(s is None or s.finished for s in statuses):
        return ExperimentStatus.finished
    if all(s is JobStatus.queued for s in statuses):
        return ExperimentStatus.queued
    return ExperimentStatus.running
