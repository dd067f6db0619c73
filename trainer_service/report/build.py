"""The report's fit sections: data, function trace, recipe checks, accuracy, verdict.

The job runner builds the parts every report had (dataset, model, curves, final losses, samples) and adds
these. Report JSON must stay valid JSON for browsers, so non-finite numbers become null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simtrain.jobs import ChecksSpec
from trainer_service.report.checks import Check, Verdict, ordered, overall
from trainer_service.report.data_checks import at_block_size, data_checks
from trainer_service.report.monitor import FitMonitor
from trainer_service.report.recipe_checks import RunFacts, expected_calls, recipe_checks, trace_check


@dataclass(frozen=True)
class RunShape:
    """The facts of the job the checks need besides the measurements."""

    vocab_size: int
    pairs: bool
    block_size: int
    max_iters: int
    eval_interval: int
    steps_done: int
    evaluated_at_init: bool
    stopped_early: str | None = None  # why training stopped before max_iters, if it did


def data_section(stats: dict[str, Any], monitor: FitMonitor, shape: RunShape) -> dict[str, Any]:
    """What the data looks like: the service's statistics and what the batches showed."""
    return {
        "examples": stats.get("num_examples"),
        "tokens": stats.get("num_tokens"),
        "vocab_size": shape.vocab_size,
        "packing": "pairs" if shape.pairs else "stream",
        "lengths": stats.get("example_tokens"),
        "prompt_lengths": stats.get("prompt_tokens"),
        "at_block_size": at_block_size(stats, shape.block_size),
        "empty_examples": stats.get("empty_examples"),
        "media_only_fields": (stats.get("module") or {}).get("media_only_fields", 0),
        "duplicate_examples": stats.get("duplicate_examples"),
        "train_val_overlap": stats.get("train_val_overlap"),
        "val_tokens_unseen_in_train": stats.get("val_tokens_unseen_in_train"),
        "module": stats.get("module"),
        "batches": monitor.batches.summary(),
        "overlap": monitor.overlap.summary(),
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
    top_text: str | None,
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
        nonfinite_steps=count,
        first_nonfinite_step=first,
        data_wait_share=data_wait_share,
        preflight=monitor.preflight,
        accuracy=accuracy,
    )
    checks: list[Check] = data_checks(
        stats,
        batches,
        data["overlap"],
        spec,
        vocab_size=shape.vocab_size,
        block_size=shape.block_size,
        pairs=shape.pairs,
        top_text=top_text,
    )
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
        "trace": {"functions": trace, "expected": expected, "steps": shape.steps_done},
        "preflight": monitor.preflight,
        "accuracy": accuracy,
        "stopped_early": shape.stopped_early,
        "thresholds": spec.model_dump(),
    }


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
