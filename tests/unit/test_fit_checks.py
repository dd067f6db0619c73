"""The checks' verdicts and reasons, from measurements made up to sit on each side of the thresholds."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from simtrain.jobs import ChecksSpec, JobSpec
from trainer_service.report import data_checks, recipe_checks
from trainer_service.report.build import json_safe
from trainer_service.report.checks import Check, Verdict, grade, ordered, overall
from trainer_service.report.recipe_checks import RunFacts, expected_calls, trace_check

SPEC = ChecksSpec()
STATS = {
    "num_examples": {"train": 900, "val": 100},
    "empty_examples": 0,
    "duplicate_examples": 3,
    "train_val_overlap": 0,
    "val_tokens_unseen_in_train": 0,
    "module": {},
}
BATCHES = {
    "batches": 10,
    "out_of_range": 0,
    "first_problem": None,
    "masked_share": 0.3,
    "padded_share": 0.2,
    "aligned_share": 1.0,
    "same_position_share": 0.05,
    "leaked_share": 0.0,
    "truncated_share": 0.0,
    "top_target": 3,
    "top_target_share": 0.2,
    "distinct_targets": 40,
    "target_entropy_bits": 4.5,
}
FACTS = RunFacts(
    vocab_size=65,
    pairs=True,
    init_val_loss=math.log(65),
    init_train_loss=4.17,
    final_train_loss=1.2,
    final_val_loss=1.3,
    nonfinite_steps=0,
    first_nonfinite_step=None,
    data_wait_share=0.01,
    preflight={"rows": 8, "steps": 50, "ratio": 0.5, "initial_loss": 4.2, "final_loss": 0.4},
    accuracy={"examples": 100, "correct": 40, "accuracy": 0.4},
)


def test_an_empty_checks_object_is_valid_and_every_threshold_has_a_default() -> None:
    spec = JobSpec.model_validate({"dataset": {"module": "text", "source": "x"}, "checks": {}})
    assert spec.checks == ChecksSpec()
    assert spec.checks.overfit_steps == 50 and spec.checks.aligned_min == 0.99
    custom = JobSpec.model_validate(
        {"dataset": {"module": "text", "source": "x"}, "checks": {"gap_warn": 1.5}}
    )
    assert custom.checks.gap_warn == 1.5


@pytest.mark.parametrize(
    "checks",
    [{"gap_warm": 1.0}, {"empty_warn": 0.5, "empty_fail": 0.1}, {"accuracy_warn": 0.1, "accuracy_fail": 0.5}],
)
def test_bad_thresholds_are_refused(checks: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate({"dataset": {"module": "text", "source": "x"}, "checks": checks})


def test_grade_and_overall_verdict() -> None:
    assert grade(0.05, 0.1, 0.2) is Verdict.passed
    assert grade(0.15, 0.1, 0.2) is Verdict.warn
    assert grade(0.25, 0.1, 0.2) is Verdict.fail
    assert grade(0.05, 0.1, None, higher_is_worse=False) is Verdict.warn
    checks = [
        Check("a", "data", "a", Verdict.passed, "fine"),
        Check("b", "data", "b", Verdict.skip, "n/a"),
        Check("c", "recipe", "c", Verdict.warn, "hm"),
        Check("d", "recipe", "dee", Verdict.fail, "broken"),
    ]
    assert [c.name for c in ordered(checks)] == ["d", "c", "a", "b"]
    result = overall(checks)
    assert result["verdict"] == "not fit" and result["failing"] == ["d"] and result["warnings"] == ["c"]
    assert "dee: broken" in result["summary"]
    assert overall(checks[:3])["verdict"] == "fit with warnings"
    assert overall(checks[:2])["verdict"] == "fit"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def data(stats: dict[str, Any] = STATS, batches: dict[str, Any] = BATCHES, overlap: Any = None) -> dict:
    overlap = overlap or {"ratio": 0.5, "unit": "32-gram", "val_hits": 0.3, "fresh_hits": 0.6}
    found = data_checks.data_checks(
        stats, batches, overlap, SPEC, vocab_size=65, block_size=64, pairs=True, top_text="e"
    )
    return by_name(found)


def test_healthy_data_passes() -> None:
    checks = data()
    assert {c.verdict for c in checks.values()} == {Verdict.passed}
    assert all(c.reason for c in checks.values())


@pytest.mark.parametrize(
    ("change", "name", "verdict"),
    [
        ({"empty_examples": 5}, "empty_examples", Verdict.passed),
        ({"empty_examples": 50}, "empty_examples", Verdict.warn),
        ({"empty_examples": 500}, "empty_examples", Verdict.fail),
        ({"duplicate_examples": 600}, "duplicates", Verdict.warn),
        ({"train_val_overlap": 4}, "split_overlap", Verdict.fail),
        ({"val_tokens_unseen_in_train": 2}, "unseen_val_tokens", Verdict.warn),
        ({"module": {"media_only_fields": 3}}, "media_only", Verdict.warn),
    ],
)
def test_statistics_checks(change: dict[str, Any], name: str, verdict: Verdict) -> None:
    check = data(STATS | change)[name]
    assert check.verdict is verdict, check.reason


def test_missing_statistics_skip_their_checks() -> None:
    checks = data({})
    for name in ("empty_examples", "duplicates", "unseen_val_tokens"):
        assert checks[name].verdict is Verdict.skip


@pytest.mark.parametrize(
    ("change", "name", "verdict"),
    [
        (
            {"out_of_range": 3, "first_problem": "train batch 4 has 3 token ids outside"},
            "token_ids_in_range",
            "fail",
        ),
        ({"masked_share": 1.0}, "masked_targets", Verdict.fail),
        ({"padded_share": 0.9}, "padding", Verdict.warn),
        ({"truncated_share": 0.3}, "truncation", Verdict.warn),
        ({"top_target_share": 0.7}, "target_diversity", Verdict.warn),
        ({"top_target_share": 0.99}, "target_diversity", Verdict.fail),
    ],
)
def test_batch_checks(change: dict[str, Any], name: str, verdict: str) -> None:
    assert data(batches=BATCHES | change)[name].verdict == verdict


def test_overlap_ratio_thresholds() -> None:
    def overlap(ratio: float | None) -> Check:
        return data(overlap={"ratio": ratio, "unit": "32-gram", "val_hits": ratio, "fresh_hits": 1.0})[
            "split_overlap"
        ]

    assert overlap(0.5).verdict is Verdict.passed
    assert overlap(0.8).verdict is Verdict.warn
    assert overlap(0.97).verdict is Verdict.fail and "copied from train" in overlap(0.97).reason
    assert overlap(None).verdict is Verdict.skip


def recipe(facts: RunFacts = FACTS, batches: dict[str, Any] = BATCHES) -> dict[str, Check]:
    return by_name(recipe_checks.recipe_checks(facts, batches, SPEC))


def test_a_healthy_run_passes_every_recipe_check() -> None:
    checks = recipe()
    assert {c.verdict for c in checks.values()} == {Verdict.passed}, [c.reason for c in checks.values()]


@pytest.mark.parametrize(
    ("change", "name", "verdict"),
    [
        ({"init_val_loss": 4.7}, "loss_at_init", Verdict.warn),
        ({"init_val_loss": 6.0}, "loss_at_init", Verdict.fail),
        ({"init_val_loss": math.nan}, "loss_at_init", Verdict.fail),
        ({"init_val_loss": None}, "loss_at_init", Verdict.skip),
        ({"final_train_loss": 4.0}, "loss_falls", Verdict.warn),
        ({"final_train_loss": 4.5}, "loss_falls", Verdict.fail),
        ({"final_train_loss": math.nan}, "loss_falls", Verdict.fail),
        ({"nonfinite_steps": 3, "first_nonfinite_step": 12}, "finite", Verdict.fail),
        ({"final_val_loss": 2.0}, "val_train_gap", Verdict.warn),
        ({"data_wait_share": 0.2}, "data_wait", Verdict.warn),
        ({"data_wait_share": 0.7}, "data_wait", Verdict.fail),
        ({"preflight": None}, "one_batch_overfit", Verdict.skip),
        ({"accuracy": {"examples": 100, "correct": 1, "accuracy": 0.01}}, "accuracy", Verdict.warn),
        ({"accuracy": None}, "accuracy", Verdict.skip),
        ({"pairs": False}, "accuracy", Verdict.skip),
    ],
)
def test_recipe_checks(change: dict[str, Any], name: str, verdict: Verdict) -> None:
    check = recipe(replace(FACTS, **change))[name]
    assert check.verdict is verdict, check.reason


def test_a_preflight_that_cannot_memorise_fails() -> None:
    stuck = FACTS.preflight | {"final_loss": 3.9}
    check = recipe(replace(FACTS, preflight=stuck))["one_batch_overfit"]
    assert check.verdict is Verdict.fail and "cannot even memorise one batch" in check.reason
    nan = FACTS.preflight | {"initial_loss": math.nan, "final_loss": math.nan}
    assert recipe(replace(FACTS, preflight=nan))["one_batch_overfit"].verdict is Verdict.fail


def test_accuracy_can_be_made_to_fail() -> None:
    strict = ChecksSpec(accuracy_warn=0.9, accuracy_fail=0.5)
    check = recipe_checks.accuracy(FACTS, strict)
    assert check.verdict is Verdict.fail and check.setting.startswith("checks.accuracy_warn")


def test_misaligned_targets_say_whether_they_are_unshifted() -> None:
    unshifted = recipe(batches=BATCHES | {"aligned_share": 0.04, "same_position_share": 1.0})[
        "targets_aligned"
    ]
    assert unshifted.verdict is Verdict.fail and "not shifted" in unshifted.reason
    scrambled = recipe(batches=BATCHES | {"aligned_share": 0.5, "same_position_share": 0.05})[
        "targets_aligned"
    ]
    assert scrambled.verdict is Verdict.fail and "fix the packing" in scrambled.reason


def test_answers_inside_prompts_are_leakage_in_pairs_only() -> None:
    assert recipe(batches=BATCHES | {"leaked_share": 0.3})["target_leakage"].verdict is Verdict.warn
    assert recipe(batches=BATCHES | {"leaked_share": 0.8})["target_leakage"].verdict is Verdict.fail
    streamed = recipe(replace(FACTS, pairs=False), BATCHES | {"leaked_share": 0.8})["target_leakage"]
    assert streamed.verdict is Verdict.skip


def test_the_trace_check_names_missing_and_wrong_counts() -> None:
    expected = expected_calls(steps=300, max_iters=300, eval_interval=100, evaluated_at_init=True)
    assert expected["optimizer_step"] == "== 300" and expected["eval"] == "== 4"
    good = {name: {"calls": 300} for name in ("batch_fetch", "lr_schedule", "forward", "loss", "backward")}
    good |= {"grad_clip": {"calls": 300}, "optimizer_step": {"calls": 300}, "encode": {"calls": 1}}
    good |= {"eval": {"calls": 4}, "generate": {"calls": 1}, "checkpoint": {"calls": 3}}
    assert trace_check(good, expected).verdict is Verdict.passed
    broken = good | {"optimizer_step": {"calls": 0}, "eval": {"calls": 1}}
    check = trace_check(broken, expected)
    assert check.verdict is Verdict.fail and check.value == 2
    assert "optimizer_step ran 0 times, expected 300" in check.reason and "eval ran 1 times" in check.reason


def test_reports_hold_no_nan() -> None:
    safe = json_safe({"a": math.nan, "b": [1.0, math.inf, (2, -math.inf)], "c": {"d": 0.5}})
    assert safe == {"a": None, "b": [1.0, None, [2, None]], "c": {"d": 0.5}}
