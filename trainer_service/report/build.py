"""The report's fit sections: data, function trace, recipe checks, accuracy, verdict.

The job runner builds the parts every report had (dataset, model, curves, final losses, samples) and adds
these. Report JSON must stay valid JSON for browsers, so non-finite numbers become null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simtrain.jobs import ChecksSpec
from trainer_service.report.chat_checks import chat_checks
from trainer_service.report.checks import Check, Verdict, ordered, overall
from trainer_service.report.data_checks import Decode, at_block_size, batches_served, data_checks
from trainer_service.report.monitor import FitMonitor
from trainer_service.report.recipe_checks import (
    RunFacts,
    baselines,
    expected_calls,
    recipe_checks,
    trace_check,
)
from trainer_service.report.retrieval_checks import retrieval_checks


@dataclass(frozen=True)
class RunShape:
    """The facts of the job the checks need besides the measurements."""

    vocab_size: int
    tokenizer: str
    pairs: bool
    block_size: int
    max_iters: int
    eval_interval: int
    steps_done: int
    evaluated_at_init: bool
    stopped_early: str | None = None  # why training stopped before max_iters, if it did
    refused: str | None = None  # the data service's refusal to serve a stream the job needs, if any
    init_from: str | None = None  # the job whose checkpoint weights the run started from, if any


def data_section(stats: dict[str, Any], monitor: FitMonitor, shape: RunShape) -> dict[str, Any]:
    """What the data looks like: the service's statistics and what the batches showed."""
    return {
        "examples": stats.get("num_examples"),
        "tokens": stats.get("num_tokens"),
        "vocab_size": shape.vocab_size,
        "val_bytes_per_token": stats.get("val_bytes_per_token"),
        "packing": "pairs" if shape.pairs else "stream",
        "lengths": stats.get("example_tokens"),
        "prompt_lengths": stats.get("prompt_tokens"),
        "at_block_size": at_block_size(stats, shape.block_size),
        "empty_examples": stats.get("empty_examples"),
        "media_only_fields": (stats.get("module") or {}).get("media_only_fields", 0),
        "media_dropped_fields": (stats.get("module") or {}).get("media_dropped_fields", 0),
        "duplicate_examples": stats.get("duplicate_examples"),
        "train_val_overlap": stats.get("train_val_overlap"),
        "val_tokens_unseen_in_train": stats.get("val_tokens_unseen_in_train"),
        "module": stats.get("module"),
        "trained_tokens": stats.get("trained_tokens"),
        "sources": stats.get("sources"),
        "retrieval": stats.get("retrieval"),
        "batches": monitor.batches.summary(),
        "overlap": monitor.overlap.summary(),
        "answers": monitor.answers.summary() if monitor.answers is not None else None,
        "chat": monitor.chat.summary(),
    }


def fit_sections(
    *,
    stats: dict[str, Any],
    monitor: FitMonitor,
    spec: ChecksSpec,
    shape: RunShape,
    curve: dict[str, list[list[float]]],
    final: dict[str, float | None],
    data_wait_share: float | None,
    trace: dict[str, dict[str, Any]],
    accuracy: dict[str, Any] | None,
    decode: Decode,
) -> dict[str, Any]:
    data = data_section(stats, monitor, shape)
    batches = data["batches"]
    count, first = monitor.nonfinite()
    facts = RunFacts(
        vocab_size=shape.vocab_size,
        pairs=shape.pairs,
        init_val_loss=_at_step(curve.get("val"), 0),
        init_train_loss=_at_step(curve.get("train_eval"), 0),
        final_train_loss=final.get("train_loss"),
        final_val_loss=final.get("val_loss"),
        train_unigram_nats=batches["train_unigram_nats"],
        recent_fall=_recent_fall(curve.get("train_eval")),
        nonfinite_steps=count,
        first_nonfinite_step=first,
        data_wait_share=data_wait_share,
        preflight=monitor.preflight,
        accuracy=accuracy,
        init_from=shape.init_from,
        retrieval=stats.get("retrieval") is not None,
    )
    checks: list[Check] = data_checks(
        stats,
        batches,
        data["overlap"],
        data["answers"],
        spec,
        vocab=shape.vocab_size,
        tokenizer=shape.tokenizer,
        block_size=shape.block_size,
        pairs=shape.pairs,
        refused=shape.refused,
        decode=decode,
    )
    checks += chat_checks(data["chat"], stats.get("module") or {}, monitor.chat.sample, spec, decode)
    checks += retrieval_checks(stats, spec)
    expected = expected_calls(shape.steps_done, shape.max_iters, shape.eval_interval, shape.evaluated_at_init)
    if shape.stopped_early:
        trace_result = Check(
            "trace", "trace", "function trace", Verdict.skip, f"training stopped early: {shape.stopped_early}"
        )
    else:
        trace_result = trace_check(trace, expected)
    checks += [trace_result, *recipe_checks(facts, batches, spec)]
    result = ordered(checks)
    return {
        **overall(result),
        "checks": [c.as_dict() for c in result],
        "data": data,
        "baselines": baselines(facts),
        "trace": {"functions": trace, "expected": expected, "steps": shape.steps_done},
        "preflight": monitor.preflight,
        "accuracy": accuracy,
        "stopped_early": shape.stopped_early,
        "thresholds": spec.model_dump(),
    }


def _recent_fall(points: list[list[float]] | None) -> float | None:
    """The relative fall of the loss between the last two evaluations (None: fewer than two)."""
    if not points or len(points) < 2 or not points[-2][1] or not math.isfinite(points[-2][1]):
        return None
    (_, before), (_, after) = points[-2], points[-1]
    return (before - after) / before


def _at_step(points: list[list[float]] | None, step: int) -> float | None:
    for s, value in points or []:
        if s == step:
            return value
    return None


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def refused_report(job_id: str, dataset: dict[str, Any], refused: str) -> dict[str, Any]:
    """The report of a job whose dataset the data service would not prepare: not fit, and what to change."""
    checks = [batches_served(refused)]
    return {
        "job_id": job_id,
        "dataset": dataset,
        **overall(checks),
        "checks": [c.as_dict() for c in checks],
        "stopped_early": refused,
    }
